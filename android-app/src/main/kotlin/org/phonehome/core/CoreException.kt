package org.phonehome.core

/** An error or a panic inside the core, thrown by the native calls of [NativeCore]. */
class CoreException(message: String) : RuntimeException(message)
