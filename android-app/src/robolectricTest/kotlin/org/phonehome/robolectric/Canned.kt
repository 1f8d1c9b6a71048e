package org.phonehome.robolectric

import org.phonehome.proto.AppDetail
import org.phonehome.proto.AppIdentity
import org.phonehome.proto.AppRow
import org.phonehome.proto.CompanyContacts
import org.phonehome.proto.Endpoint
import org.phonehome.proto.HourCount
import org.phonehome.proto.Snapshot
import org.phonehome.proto.Totals

/** Snapshots whose true counts the tests know: three apps, one of them unattributed traffic. */
object Canned {
    val weather: AppRow = AppRow.newBuilder()
        .setApp(AppIdentity.newBuilder().setUid(10123).addPackages("com.miui.weather2").setLabel("Weather").setSystem(true))
        .setFlows(42).setXiaomiFlows(17).setXiaomiHosts(3).setBytesUp(12_345).setBytesDown(678_901)
        .setCleartextFlows(2).build()
    val browser: AppRow = AppRow.newBuilder()
        .setApp(AppIdentity.newBuilder().setUid(10200).addPackages("org.example.browser").setLabel("Browser"))
        .setFlows(9).setXiaomiFlows(0).setBytesUp(2_000).setBytesDown(90_000).build()
    val unattributed: AppRow = AppRow.newBuilder().setUnattributed(true).setFlows(5).setBytesUp(300).setBytesDown(400).build()

    val running: Snapshot = Snapshot.newBuilder()
        .setTotals(
            Totals.newBuilder().setRunning(true).setSessionId(1).setFlowsOpened(56).setContacts(56).setXiaomiFlows(17)
                .setBytesUp(14_645).setBytesDown(769_301),
        )
        .addApps(weather).addApps(browser).addApps(unattributed)
        .build()

    val weatherDetail: AppDetail = AppDetail.newBuilder()
        .setRow(weather)
        .addEndpoints(Endpoint.newBuilder().setHost("weatherapi.intl.xiaomi.com").setFlows(12).addPorts(443))
        .addEndpoints(Endpoint.newBuilder().setHost("tracking.miui.com").setFlows(5).addPorts(80))
        .addCompanies(CompanyContacts.newBuilder().setCompany("Xiaomi").setContacts(17))
        .addCompanies(CompanyContacts.newBuilder().setCompany("Google").setContacts(4))
        // 42 contacts in four hours, as the row counts them.
        .addAllContactsPerHour(
            listOf(10L, 0L, 20L, 12L).mapIndexed { i, n ->
                HourCount.newBuilder().setHourStartMs(1_767_225_600_000L + i * 3_600_000L).setContacts(n).build()
            },
        )
        .build()
}
