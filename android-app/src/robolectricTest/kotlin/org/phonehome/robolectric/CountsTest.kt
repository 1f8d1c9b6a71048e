package org.phonehome.robolectric

import android.app.Notification
import android.widget.ListView
import android.widget.TextView
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith
import org.phonehome.R
import org.phonehome.proto.AppDetail
import org.phonehome.proto.AppIdentity
import org.phonehome.proto.AppRow
import org.phonehome.proto.CompanyContacts
import org.phonehome.proto.ComparedHost
import org.phonehome.proto.Comparison
import org.phonehome.proto.Endpoint
import org.phonehome.proto.Marker
import org.phonehome.proto.Snapshot
import org.phonehome.proto.Totals
import org.phonehome.ui.AppDetailActivity
import org.phonehome.ui.ExperimentActivity
import org.phonehome.ui.LiveActivity
import org.phonehome.vpn.CaptureNotification
import org.robolectric.Robolectric
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.annotation.Config
import org.robolectric.annotation.GraphicsMode

/**
 * Every count says what it counts in the form its number takes: "1 contact" and "2 contacts", in
 * each shipped language (Android plurals). The expected texts are the translations as a reader
 * should see them; a string that forgot its plural form reads "1 contacts" and fails here.
 */
@RunWith(RobolectricTestRunner::class)
@GraphicsMode(GraphicsMode.Mode.NATIVE)
@Config(sdk = [36], shadows = [ShadowNativeCore::class, ShadowVpnBuilder::class, ShadowTunFd::class], instrumentedPackages = ["org.phonehome.core"])
class CountsTest {
    /** What Live (row, status), the notification and App detail (header, endpoint, companies) read with every count at n. */
    private data class Expected(
        val xiaomi: String,
        val counts: String,
        val flags: String,
        val status: String,
        val notification: String,
        val header: String,
        val endpoint: String,
        val company: String,
    )

    private val expected = mapOf(
        "en" to mapOf(
            1 to Expected(
                "Xiaomi: 1 contact with 1 host", "1 contact · 1 DNS lookup ·", "1 unencrypted contact · identifiers in 1 contact",
                "Capturing: 1 contact, 1 with Xiaomi, 1 DNS lookup ·", "1 app · 1 contact, 1 with Xiaomi · 1 DNS lookup",
                "1 contact · 1 with Xiaomi · 1 DNS lookup", "1 contact ·", "Xiaomi: 1 contact",
            ),
            2 to Expected(
                "Xiaomi: 2 contacts with 2 hosts", "2 contacts · 2 DNS lookups ·", "2 unencrypted contacts · identifiers in 2 contacts",
                "Capturing: 2 contacts, 2 with Xiaomi, 2 DNS lookups ·", "2 apps · 2 contacts, 2 with Xiaomi · 2 DNS lookups",
                "2 contacts · 2 with Xiaomi · 2 DNS lookups", "2 contacts ·", "Xiaomi: 2 contacts",
            ),
        ),
        "nl" to mapOf(
            1 to Expected(
                "Xiaomi: 1 contact met 1 host", "1 contact · 1 DNS-opzoeking ·", "1 onversleuteld contact · identificatoren in 1 contact",
                "Opname: 1 contact, 1 met Xiaomi, 1 DNS-opzoeking ·", "1 app · 1 contact, 1 met Xiaomi · 1 DNS-opzoeking",
                "1 contact · 1 met Xiaomi · 1 DNS-opzoeking", "1 contact ·", "Xiaomi: 1 contact",
            ),
            2 to Expected(
                "Xiaomi: 2 contacten met 2 hosts", "2 contacten · 2 DNS-opzoekingen ·", "2 onversleutelde contacten · identificatoren in 2 contacten",
                "Opname: 2 contacten, 2 met Xiaomi, 2 DNS-opzoekingen ·", "2 apps · 2 contacten, 2 met Xiaomi · 2 DNS-opzoekingen",
                "2 contacten · 2 met Xiaomi · 2 DNS-opzoekingen", "2 contacten ·", "Xiaomi: 2 contacten",
            ),
        ),
        "de" to mapOf(
            1 to Expected(
                "Xiaomi: 1 Kontakt mit 1 Host", "1 Kontakt · 1 DNS-Abfrage ·", "1 unverschlüsselter Kontakt · Kennungen in 1 Kontakt",
                "Aufzeichnung: 1 Kontakt, 1 mit Xiaomi, 1 DNS-Abfrage ·", "1 App · 1 Kontakt, 1 mit Xiaomi · 1 DNS-Abfrage",
                "1 Kontakt · 1 mit Xiaomi · 1 DNS-Abfrage", "1 Kontakt ·", "Xiaomi: 1 Kontakt",
            ),
            2 to Expected(
                "Xiaomi: 2 Kontakte mit 2 Hosts", "2 Kontakte · 2 DNS-Abfragen ·", "2 unverschlüsselte Kontakte · Kennungen in 2 Kontakten",
                "Aufzeichnung: 2 Kontakte, 2 mit Xiaomi, 2 DNS-Abfragen ·", "2 Apps · 2 Kontakte, 2 mit Xiaomi · 2 DNS-Abfragen",
                "2 Kontakte · 2 mit Xiaomi · 2 DNS-Abfragen", "2 Kontakte ·", "Xiaomi: 2 Kontakte",
            ),
        ),
    )

    @Before
    fun reset() {
        Harness.freshScreens()
    }

    @After
    fun restoreLocale() = Harness.restoreLocale()

    /** An app whose every count is [n]. */
    private fun row(n: Long, uid: Int): AppRow = AppRow.newBuilder()
        .setApp(AppIdentity.newBuilder().setUid(uid).addPackages("org.example.app$uid").setLabel("App $uid"))
        .setFlows(n).setXiaomiFlows(n).setXiaomiHosts(n.toInt()).setLookups(n).setCleartextFlows(n).setLeakFlows(n)
        .setBytesUp(1_000).setBytesDown(2_000).build()

    /** [n] apps, each with every count at [n], and totals of [n] too. */
    private fun snapshot(n: Long): Snapshot = Snapshot.newBuilder()
        .setTotals(Totals.newBuilder().setRunning(true).setSessionId(1).setContacts(n).setXiaomiFlows(n).setDnsQueries(n))
        .addAllApps((1..n.toInt()).map { row(n, 10_000 + it) })
        .build()

    @Test
    fun liveRowStatusAndNotificationSayOneContactAndTwoContacts() {
        val wrong = mutableListOf<String>()
        fun check(what: String, shown: String, wanted: String, prefix: Boolean = false) {
            if (if (prefix) !shown.startsWith(wanted) else shown != wanted) wrong += "$what: '$shown', expected '$wanted'"
        }
        for ((locale, byCount) in expected) {
            Harness.setLocale(locale)
            for ((n, want) in byCount) {
                val where = "$locale, counts at $n"
                FakeCore.snapshot = snapshot(n.toLong())
                FakeCore.running = true
                val live = Robolectric.buildActivity(LiveActivity::class.java).setup().get()
                val list = live.findViewById<ListView>(R.id.apps)
                Shots.settle("$n rows on Live ($where)") { list.adapter.count == n && list.childCount >= 1 }
                Shots.save(live, "LiveActivity-counts-$n-$locale")
                val first = list.getChildAt(0)
                check("$where: Xiaomi line", first.findViewById<TextView>(R.id.app_xiaomi).text.toString(), want.xiaomi)
                check("$where: counts", first.findViewById<TextView>(R.id.app_counts).text.toString(), want.counts, prefix = true)
                check("$where: flags", first.findViewById<TextView>(R.id.app_flags).text.toString(), want.flags)
                check("$where: status", live.findViewById<TextView>(R.id.status).text.toString(), want.status, prefix = true)
                val spoken = first.contentDescription.toString()
                if (want.xiaomi !in spoken || want.flags !in spoken) wrong += "$where: the row's description '$spoken' differs from its text"
                live.finish()

                val notification = CaptureNotification(RuntimeEnvironment.getApplication()).running(FakeCore.snapshot, canStop = true)
                check("$where: notification", notification.extras.getCharSequence(Notification.EXTRA_TEXT).toString(), want.notification)
            }
        }
        assertTrue(wrong.joinToString("\n"), wrong.isEmpty())
        assertTrue("crashes: ${Harness.crashes}", Harness.crashes.isEmpty())
    }

    @Test
    fun appDetailSaysOneContactAndTwoContacts() {
        val wrong = mutableListOf<String>()
        for ((locale, byCount) in expected) {
            Harness.setLocale(locale)
            for ((n, want) in byCount) {
                val where = "$locale, counts at $n"
                FakeCore.snapshot = snapshot(n.toLong())
                FakeCore.appDetail = AppDetail.newBuilder()
                    .setRow(row(n.toLong(), 10_001))
                    .addEndpoints(Endpoint.newBuilder().setHost("tracking.miui.com").setFlows(n.toLong()).setCleartextFlows(n.toLong()))
                    .addCompanies(CompanyContacts.newBuilder().setCompany("Xiaomi").setContacts(n.toLong()))
                    .build()
                val intent = android.content.Intent(RuntimeEnvironment.getApplication(), AppDetailActivity::class.java)
                    .putExtra(AppDetailActivity.EXTRA_UID, 10_001)
                val detail = Robolectric.buildActivity(AppDetailActivity::class.java, intent).setup().get()
                val endpoints = detail.findViewById<ListView>(R.id.list)
                Shots.settle("1 endpoint ($where)") { endpoints.childCount == 1 }
                Shots.save(detail, "AppDetailActivity-counts-$n-$locale")
                val header = detail.findViewById<TextView>(R.id.header).text.toString()
                if (!header.endsWith("UID 10001 · ${want.header}")) wrong += "$where: header '$header', expected '… ${want.header}'"
                val endpoint = endpoints.getChildAt(0)
                val stats = endpoint.findViewById<TextView>(R.id.endpoint_stats).text.toString()
                if (!stats.startsWith(want.endpoint)) wrong += "$where: endpoint '$stats', expected '${want.endpoint}…'"
                val flags = endpoint.findViewById<TextView>(R.id.endpoint_flags).text.toString()
                val cleartext = want.flags.substringBefore(" · ")
                if (flags != cleartext) wrong += "$where: endpoint flags '$flags', expected '$cleartext'"
                val companies = detail.findViewById<TextView>(R.id.companies).text.toString()
                if (companies != want.company) wrong += "$where: companies '$companies', expected '${want.company}'"
                detail.finish()
            }
        }
        assertTrue(wrong.joinToString("\n"), wrong.isEmpty())
        assertEquals("crashes", emptyList<String>(), Harness.crashes.toList())
    }

    /** The experiment's comparison: one host of one, one contact before; then two of two, two contacts. */
    @Test
    fun experimentComparisonSaysOneHostAndTwoHosts() {
        val expected = mapOf(
            "en" to listOf(
                "After “Ads off”: 1 of 1 host is still contacted.", "h1.example: 1 contact before → 3 after",
                "After “Ads off”: 2 of 2 hosts are still contacted.", "h1.example: 2 contacts before → 3 after",
            ),
            "de" to listOf(
                "Nach „Ads off“: 1 von 1 Host wird weiterhin kontaktiert.", "h1.example: 1 Kontakt vorher → 3 nachher",
                "Nach „Ads off“: 2 von 2 Hosts werden weiterhin kontaktiert.", "h1.example: 2 Kontakte vorher → 3 nachher",
            ),
        )
        val marker = Marker.newBuilder().setId(1).setLabel("Ads off").setTimeMs(1_767_225_600_000L)
        FakeCore.snapshot = snapshot(1).toBuilder().addMarkers(marker).build()
        val wrong = mutableListOf<String>()
        for ((locale, lines) in expected) {
            Harness.setLocale(locale)
            for (n in 1..2) {
                FakeCore.comparison = Comparison.newBuilder().setMarker(marker).addAllHosts(
                    (1..n).map { ComparedHost.newBuilder().setHost("h$it.example").setFlowsBefore(n.toLong()).setFlowsAfter(3).build() },
                ).build()
                val activity = Robolectric.buildActivity(ExperimentActivity::class.java).setup().get()
                val spinner = activity.findViewById<android.widget.Spinner>(R.id.marker_spinner)
                Shots.settle("the marker on Experiment ($locale)") { spinner.adapter?.count == 1 }
                activity.findViewById<android.widget.Button>(R.id.compare).performClick()
                val result = activity.findViewById<TextView>(R.id.compare_result)
                Shots.settle("the comparison ($locale, $n)") { "h1.example" in result.text }
                result.requestRectangleOnScreen(android.graphics.Rect(0, 0, result.width, result.height), true)
                Shots.save(activity, "ExperimentActivity-compare-$n-$locale")
                val text = result.text.toString()
                val (summary, line) = lines.subList(2 * (n - 1), 2 * n)
                if (!text.startsWith(summary)) wrong += "$locale, $n: '$text' does not start with '$summary'"
                if (text.lines().none { it == line }) wrong += "$locale, $n: '$text' has no line '$line'"
                activity.finish()
            }
        }
        assertTrue(wrong.joinToString("\n"), wrong.isEmpty())
        assertEquals("crashes", emptyList<String>(), Harness.crashes.toList())
    }
}
