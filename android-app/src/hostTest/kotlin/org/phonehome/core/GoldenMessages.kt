package org.phonehome.core

import org.phonehome.proto.AppDetail
import org.phonehome.proto.AppIdentity
import org.phonehome.proto.AppRow
import org.phonehome.proto.CompareRequest
import org.phonehome.proto.Destination
import org.phonehome.proto.Endpoint
import org.phonehome.proto.FlowRow
import org.phonehome.proto.Marker
import org.phonehome.proto.Proto
import org.phonehome.proto.QueryRequest
import org.phonehome.proto.QueryResponse
import org.phonehome.proto.Snapshot
import org.phonehome.proto.StartConfig
import org.phonehome.proto.Totals

/** The values of rust-core/src/android/golden.rs, built with protobuf-javalite. Keep in step. */
object GoldenMessages {
    fun startConfig(): StartConfig = StartConfig.newBuilder()
        .setDnsV4("198.18.0.53")
        .setDnsV6("fd00::53")
        .setDnsUpstream("198.18.1.1:53")
        .setMtu(9000)
        .setDevice("Xiaomi Redmi Note 13 Pro (garnet)")
        .setOsVersion("Android 14 / HyperOS 1.0.7")
        .setAppVersion("0.1.0")
        .setNote("Grüße, groetjes — 小米")
        .setRetentionDays(30)
        .setModel("23013RK75C")
        .setManufacturer("Xiaomi")
        .setBuildIncremental("OS1.0.7.0.UMCEUXM")
        .addAllOwnIps(listOf("10.215.173.1", "fd00:7068:6f6d:6500::1"))
        .build()

    fun appIdentity(): AppIdentity = AppIdentity.newBuilder()
        .setUid(1000)
        .addAllPackages(listOf("android", "com.miui.analytics", "com.xiaomi.xmsf"))
        .setLabel("Android System")
        .setSystem(true)
        .build()

    fun snapshot(): Snapshot {
        val destination = Destination.newBuilder()
            .setVendor("Xiaomi")
            .setCategory("analytics/telemetry")
            .setPurpose("MIUI usage statistics upload")
            .setCountry("SG")
            .setAsn(45102)
            .setAsName("Alibaba (US) Technology Co., Ltd.")
        return Snapshot.newBuilder()
            .setTotals(
                Totals.newBuilder()
                    .setRunning(true)
                    .setSessionId(42)
                    .setStartedMs(1_763_700_000_000)
                    .setFlowsOpened(300)
                    .setFlowsOpen(12)
                    .setBytesUp(1L shl 33)
                    .setBytesDown(123_456_789)
                    .setXiaomiFlows(77)
                    .setXiaomiBytes(4_096)
                    .setDnsQueries(150),
            )
            .addApps(
                AppRow.newBuilder()
                    .setApp(appIdentity())
                    .setFlows(80)
                    .setXiaomiFlows(77)
                    .setXiaomiHosts(9)
                    .setBytesUp(10_000)
                    .setBytesDown(20_000)
                    .setCleartextFlows(2)
                    .setLeakFlows(1)
                    .setLastSeenMs(1_763_700_060_000),
            )
            .addApps(AppRow.newBuilder().setFlows(3).setUnattributed(true).setLastSeenMs(-1))
            .addRecent(
                FlowRow.newBuilder()
                    .setId(7)
                    .setUid(1000)
                    .setHasUid(true)
                    .setProto(Proto.PROTO_TCP)
                    .setSrc("198.18.0.2:40000")
                    .setDst("[fd00::1]:443")
                    .setHostname("data.mistat.intl.xiaomi.com")
                    .setHostnameSource("sni")
                    .setDestination(destination)
                    .setBytesUp(512)
                    .setBytesDown(2048)
                    .setFirstSeenMs(1_763_700_001_000)
                    .setLastSeenMs(1_763_700_002_000)
                    .setClosed(true)
                    .addAllLeaks(listOf("android-id", "imei"))
                    .setL7("tls"),
            )
            .addMarkers(Marker.newBuilder().setId(1).setTimeMs(1_763_700_030_000).setLabel("User Experience Program off"))
            .build()
    }

    fun compareRequest(): QueryRequest = QueryRequest.newBuilder()
        .setCompare(CompareRequest.newBuilder().setMarkerId(2).setSinceMarkerId(1).setXiaomiOnly(true))
        .build()

    fun endpointResponse(): QueryResponse = QueryResponse.newBuilder()
        .setAppDetail(
            AppDetail.newBuilder().addEndpoints(
                Endpoint.newBuilder()
                    .setHost("tracking.intl.miui.com")
                    .addAllPorts(listOf(80, 443, 65535))
                    .addAddresses("198.18.1.9")
                    .setFlows(1),
            ),
        )
        .build()
}
