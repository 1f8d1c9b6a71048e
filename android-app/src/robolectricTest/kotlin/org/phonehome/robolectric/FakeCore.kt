package org.phonehome.robolectric

import org.phonehome.core.CoreCallback
import org.phonehome.core.CoreException
import org.phonehome.core.NativeCore
import org.phonehome.proto.AppDetail
import org.phonehome.proto.Comparison
import org.phonehome.proto.QueryRequest
import org.phonehome.proto.QueryResponse
import org.phonehome.proto.Snapshot
import org.robolectric.annotation.Implementation
import org.robolectric.annotation.Implements

/**
 * The canned answers of the stand-in for libphonehome.so (the NDK build is out of reach here).
 * Tests set them before launching a screen; [calls] records what the app asked the core.
 */
object FakeCore {
    @Volatile var snapshot: Snapshot = Snapshot.getDefaultInstance()
    @Volatile var appDetail: AppDetail = AppDetail.getDefaultInstance()
    @Volatile var comparison: Comparison = Comparison.getDefaultInstance()
    /** When set, start() throws CoreException with this message, as the core does. */
    @Volatile var startError: String? = null
    @Volatile var running = false
    @Volatile var startedFd: Int? = null
    /** As with the real library: a native called before NativeCore.load() is UnsatisfiedLinkError. */
    @Volatile var loaded = false
    val calls: MutableList<String> = java.util.Collections.synchronizedList(mutableListOf())

    fun reset() {
        snapshot = Snapshot.getDefaultInstance()
        appDetail = AppDetail.getDefaultInstance()
        comparison = Comparison.getDefaultInstance()
        startError = null
        running = false
        startedFd = null
        loaded = false
        calls.clear()
    }
}

/** NativeCore's static natives, answered from [FakeCore]. */
@Implements(NativeCore::class)
class ShadowNativeCore {
    companion object {
        @JvmStatic @Implementation
        fun load(path: String?) {
            FakeCore.calls += "load"
            FakeCore.loaded = true
        }

        private fun linked(method: String) {
            if (!FakeCore.loaded) {
                throw UnsatisfiedLinkError("No implementation found for org.phonehome.core.NativeCore.$method (NativeCore.load() was never called)")
            }
        }

        @JvmStatic @Implementation
        fun isLoadedAndRunning(): Boolean = FakeCore.loaded && FakeCore.running

        @JvmStatic @Implementation
        fun start(tunFd: Int, dbPath: String, config: ByteArray, callback: CoreCallback) {
            linked("start")
            FakeCore.calls += "start"
            FakeCore.startError?.let { throw CoreException(it) }
            FakeCore.startedFd = tunFd
            FakeCore.running = true
        }

        @JvmStatic @Implementation
        fun stop(): ByteArray {
            linked("stop")
            FakeCore.calls += "stop"
            FakeCore.running = false
            return FakeCore.snapshot.toByteArray()
        }

        @JvmStatic @Implementation
        fun isRunning(): Boolean {
            linked("isRunning")
            return FakeCore.running
        }

        @JvmStatic @Implementation
        fun openHistory(dbPath: String) {
            linked("openHistory")
            FakeCore.calls += "openHistory"
        }

        @JvmStatic @Implementation
        fun snapshot(): ByteArray {
            linked("snapshot")
            return FakeCore.snapshot.toByteArray()
        }

        @JvmStatic @Implementation
        fun query(request: ByteArray): ByteArray {
            linked("query")
            FakeCore.calls += "query"
            val answer = QueryResponse.newBuilder()
            if (QueryRequest.parseFrom(request).hasCompare()) answer.setComparison(FakeCore.comparison) else answer.setAppDetail(FakeCore.appDetail)
            return answer.build().toByteArray()
        }

        @JvmStatic @Implementation
        fun mark(label: String): ByteArray {
            linked("mark")
            FakeCore.calls += "mark:$label"
            return org.phonehome.proto.Marker.newBuilder().setId(1).setLabel(label).build().toByteArray()
        }

        @JvmStatic @Implementation
        fun loadGeo(fd: Int, offset: Long, length: Long): Int {
            linked("loadGeo")
            FakeCore.calls += "loadGeo"
            return 0
        }

        @JvmStatic @Implementation
        fun changeNetwork(dnsUpstream: String, network: String): ByteArray {
            linked("changeNetwork")
            FakeCore.calls += "changeNetwork:$dnsUpstream"
            return org.phonehome.proto.Marker.newBuilder().setId(2).setLabel("network change: $network").build().toByteArray()
        }

        @JvmStatic @Implementation
        fun export(fd: Int, dbPath: String, request: ByteArray): Long {
            linked("export")
            return 0
        }
    }
}
