package org.phonehome.robolectric

import android.os.ParcelFileDescriptor
import org.robolectric.annotation.Implementation
import org.robolectric.annotation.Implements
import org.robolectric.shadows.ShadowParcelFileDescriptor

/**
 * ParcelFileDescriptor.detachFd() on the host JDK: the real one goes through libcore's
 * acquireRawFd and FileDescriptor.getOwnerId$, which only ART has. Hands out the raw fd, as ART does.
 */
@Implements(ParcelFileDescriptor::class)
class ShadowTunFd : ShadowParcelFileDescriptor() {
    @Implementation
    fun detachFd(): Int = getFd()
}
