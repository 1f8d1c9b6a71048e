package org.phonehome.core

import java.io.File

/** Loads the host build of the core, as the app loads libphonehome.so from its APK. */
object HostLibrary {
    val path: String by lazy {
        val lib = System.getProperty("phonehome.lib") ?: error("system property phonehome.lib is not set")
        check(File(lib).isFile) { "$lib does not exist: build it with cargo build -p phonehome-core --features jni-test" }
        lib
    }

    fun load() = NativeCore.load(path)

    /** Whether [fd] is an open descriptor of this process. */
    fun isOpen(fd: Int): Boolean = File("/proc/self/fd/$fd").exists()
}
