package org.phonehome.robolectric

import java.io.FileDescriptor
import org.robolectric.annotation.Implementation
import org.robolectric.annotation.Implements

/**
 * ParcelFileDescriptor.detachFd() on the host JDK: libcore's acquireRawFd calls
 * FileDescriptor.getOwnerId$, which only ART's FileDescriptor has. Hands out the raw fd as ART does.
 */
@Implements(className = "libcore.io.IoUtils", isInAndroidSdk = false)
class ShadowIoUtils {
    companion object {
        @JvmStatic @Implementation
        fun acquireRawFd(fd: FileDescriptor): Int {
            val field = FileDescriptor::class.java.getDeclaredField("fd").apply { isAccessible = true }
            val raw = field.getInt(fd)
            field.setInt(fd, -1)
            return raw
        }
    }
}
