package org.phonehome.core

import android.content.res.AssetFileDescriptor

import org.phonehome.proto.AppDetail
import org.phonehome.proto.AppDetailRequest
import org.phonehome.proto.CompareRequest
import org.phonehome.proto.Comparison
import org.phonehome.proto.DomainDetail
import org.phonehome.proto.DomainDetailRequest
import org.phonehome.proto.ExportFormat
import org.phonehome.proto.ExportRequest
import org.phonehome.proto.Marker
import org.phonehome.proto.QueryRequest
import org.phonehome.proto.QueryResponse
import org.phonehome.proto.Snapshot
import org.phonehome.proto.StartConfig

/**
 * The typed face of [NativeCore]: builds and parses the proto messages.
 *
 * Every call first makes sure the library is loaded and the history is open, once per process:
 * after HyperOS kills the app, Android may reopen any screen directly, so no screen can assume
 * that Live ran first. A library that cannot load surfaces as [UnsatisfiedLinkError] from the
 * call, which [org.phonehome.ui.Background] hands to the screen as a failed result.
 */
object Core {
    @Volatile private var historyPath: String? = null
    @Volatile private var geoAsset: (() -> AssetFileDescriptor?)? = null
    @Volatile private var ready = false

    /** Countries and ASNs the core knows (0: no geo file in this build, or it failed to load). */
    @Volatile var geoRanges = 0
        private set

    /**
     * Where the history lives and how to open the bundled country/ASN file; set by the
     * Application before any screen or service runs (no I/O here).
     */
    fun init(dbPath: String, geo: () -> AssetFileDescriptor?) {
        historyPath = dbPath
        geoAsset = geo
    }

    /** Loads the library and opens the history (the database queries read without a capture). */
    fun load() {
        NativeCore.load() // idempotent, and cheap after the first time
        if (ready) return
        synchronized(this) {
            if (ready) return
            // Before any lookup: the core settles on its country/ASN database at the first one.
            loadGeo()
            historyPath?.let { if (!NativeCore.isRunning()) NativeCore.openHistory(it) }
            ready = true
        }
    }

    fun start(tunFd: Int, dbPath: String, config: StartConfig, callback: CoreCallback) {
        load()
        NativeCore.start(tunFd, dbPath, config.toByteArray(), callback)
    }

    fun stop(): Snapshot = Snapshot.parseFrom(loaded().stop())

    fun isRunning(): Boolean = NativeCore.isLoadedAndRunning()

    fun snapshot(): Snapshot = Snapshot.parseFrom(loaded().snapshot())

    fun mark(label: String): Marker = Marker.parseFrom(loaded().mark(label))

    fun changeNetwork(dnsUpstream: String, network: String): Marker =
        Marker.parseFrom(loaded().changeNetwork(dnsUpstream, network))

    fun appDetail(uid: Int, unattributed: Boolean): AppDetail {
        val request = AppDetailRequest.newBuilder().setUid(uid).setUnattributed(unattributed)
        return answer(QueryRequest.newBuilder().setAppDetail(request).build()).appDetail
    }

    fun domainDetail(host: String): DomainDetail {
        val request = DomainDetailRequest.newBuilder().setHost(host)
        return answer(QueryRequest.newBuilder().setDomainDetail(request).build()).domainDetail
    }

    fun compare(markerId: Long, sinceMarkerId: Long, xiaomiOnly: Boolean): Comparison {
        val request = CompareRequest.newBuilder()
            .setMarkerId(markerId)
            .setSinceMarkerId(sinceMarkerId)
            .setXiaomiOnly(xiaomiOnly)
        return answer(QueryRequest.newBuilder().setCompare(request).build()).comparison
    }

    /** HTML: [compareMarkerId] makes it the before/after report of that marker; else [sessionId] (0 = all). */
    fun export(fd: Int, dbPath: String, format: ExportFormat, sessionId: Long = 0, compareMarkerId: Long = 0): Long {
        val request = ExportRequest.newBuilder()
            .setFormat(format)
            .setSessionId(sessionId)
            .setCompareMarkerId(compareMarkerId)
            .build()
        return loaded().export(fd, dbPath, request.toByteArray())
    }

    /** Runs a query; an answer of kind `error` becomes a [CoreException]. */
    private fun answer(request: QueryRequest): QueryResponse {
        val response = QueryResponse.parseFrom(loaded().query(request.toByteArray()))
        if (response.kindCase == QueryResponse.KindCase.ERROR) {
            throw CoreException("${response.error.code}: ${response.error.message}")
        }
        return response
    }

    private fun loadGeo() {
        try {
            geoAsset?.invoke()?.use { asset ->
                geoRanges = NativeCore.loadGeo(asset.parcelFileDescriptor.fd, asset.startOffset, asset.length)
            }
        } catch (e: Exception) {
            // Without it the app still works, only without countries; say why in the log.
            android.util.Log.w("PhoneHome", "country/ASN file not loaded: ${e.message}")
        }
    }

    private fun loaded(): NativeCore {
        load()
        return NativeCore
    }
}
