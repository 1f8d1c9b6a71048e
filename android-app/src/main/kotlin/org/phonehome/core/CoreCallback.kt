package org.phonehome.core

/**
 * What the core asks the app, on the core's owner-lookup thread (never the packet loop).
 * Implementations may block briefly (Binder calls); they must not throw.
 */
interface CoreCallback {
    /**
     * The UID owning the socket [localAddress]:[localPort] -> [remoteAddress]:[remotePort]
     * (addresses as 4 or 16 raw bytes, [protocol] as IPPROTO_TCP/UDP), [OWNER_UNKNOWN] when it
     * cannot be found, or [OWNER_UNSUPPORTED] when the platform has no lookup (the core then
     * reads /proc/net itself).
     */
    fun ownerUid(protocol: Int, localAddress: ByteArray, localPort: Int, remoteAddress: ByteArray, remotePort: Int): Int

    /** An encoded `AppIdentity` (every package of a shared UID, label, system flag), or null. */
    fun appIdentity(uid: Int): ByteArray?

    companion object {
        const val OWNER_UNKNOWN = -1
        const val OWNER_UNSUPPORTED = -2
    }
}
