package org.phonehome.core

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

/** The typed face of [NativeCore]: builds and parses the proto messages. */
object Core {
    fun start(tunFd: Int, dbPath: String, config: StartConfig, callback: CoreCallback) =
        NativeCore.start(tunFd, dbPath, config.toByteArray(), callback)

    fun stop(): Snapshot = Snapshot.parseFrom(NativeCore.stop())

    fun isRunning(): Boolean = NativeCore.isRunning()

    fun snapshot(): Snapshot = Snapshot.parseFrom(NativeCore.snapshot())

    fun mark(label: String): Marker = Marker.parseFrom(NativeCore.mark(label))

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
        return NativeCore.export(fd, dbPath, request.toByteArray())
    }

    /** Runs a query; an answer of kind `error` becomes a [CoreException]. */
    private fun answer(request: QueryRequest): QueryResponse {
        val response = QueryResponse.parseFrom(NativeCore.query(request.toByteArray()))
        if (response.kindCase == QueryResponse.KindCase.ERROR) {
            throw CoreException("${response.error.code}: ${response.error.message}")
        }
        return response
    }
}
