package org.phonehome.core

/** Test-only exports of the host cdylib (cargo feature `jni-test`; never in the APK). */
object NativeTestHooks {
    /** Attaches to TUN device [name] like VpnService.establish() hands one over; returns the fd. */
    @JvmStatic
    external fun openTun(name: String): Int

    /** A writable descriptor for a new file, standing in for a SAF ParcelFileDescriptor. */
    @JvmStatic
    external fun openFile(path: String): Int

    /** Panics inside a native call. */
    @JvmStatic
    external fun panicNow(message: String)
}
