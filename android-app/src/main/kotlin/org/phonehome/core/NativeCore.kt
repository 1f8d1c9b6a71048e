package org.phonehome.core

/**
 * The Rust core, `libphonehome.so`, as the JNI exports of rust-core/src/android/bridge.rs.
 *
 * Few coarse calls; messages travel as bytes of proto/phonehome.proto. Failures, and panics
 * inside the core, arrive as [CoreException]; they never take the VPN process down. Use [Core]
 * for the typed API.
 */
object NativeCore {
    @Volatile
    private var loaded = false

    /** Loads the library once: from the APK's jniLibs, or from [path] (host tests). */
    @JvmStatic
    fun load(path: String? = null) {
        synchronized(this) {
            if (loaded) return
            if (path == null) System.loadLibrary("phonehome") else System.load(path)
            loaded = true
        }
    }

    /** False until the library is loaded, so callers need not load it just to ask. */
    @JvmStatic
    fun isLoadedAndRunning(): Boolean = loaded && isRunning()

    /** Starts a capture on [tunFd] (from `ParcelFileDescriptor.detachFd()`; the core owns and closes it). */
    @JvmStatic
    external fun start(tunFd: Int, dbPath: String, config: ByteArray, callback: CoreCallback)

    /** Stops the capture: closes the tun fd, flushes the database. Returns the final `Snapshot`. */
    @JvmStatic
    external fun stop(): ByteArray

    @JvmStatic
    external fun isRunning(): Boolean

    /** The database [snapshot] and [query] read when no capture ran in this process. */
    @JvmStatic
    external fun openHistory(dbPath: String)

    /** A `Snapshot` of the running capture, else of the last one (this process, else [openHistory]). */
    @JvmStatic
    external fun snapshot(): ByteArray

    /** `QueryRequest` in, `QueryResponse` out. */
    @JvmStatic
    external fun query(request: ByteArray): ByteArray

    /** Records an experiment marker; returns the `Marker`. */
    @JvmStatic
    external fun mark(label: String): ByteArray

    /**
     * Makes the APK's country/ASN asset the core's database: [fd] of the APK (kept and closed by
     * the caller), the asset's [offset] and [length] in it. Returns the number of ranges.
     */
    @JvmStatic
    external fun loadGeo(fd: Int, offset: Long, length: Long): Int

    /**
     * The phone changed networks: the running capture sends DNS to [dnsUpstream] ("ip:port")
     * from now on, in the same session; [network] names the network for the timeline entry.
     * Returns the `Marker` of that entry.
     */
    @JvmStatic
    external fun changeNetwork(dnsUpstream: String, network: String): ByteArray

    /** Writes the report (`ExportRequest`) of the database at [dbPath] into [fd] and closes it. */
    @JvmStatic
    external fun export(fd: Int, dbPath: String, request: ByteArray): Long
}
