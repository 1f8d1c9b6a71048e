package org.phonehome.robolectric

import android.content.Intent
import android.graphics.Bitmap
import android.graphics.Canvas
import android.widget.TextView
import java.util.TimeZone
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith
import org.phonehome.R
import org.phonehome.proto.AppDetail
import org.phonehome.proto.HourCount
import org.phonehome.ui.AppDetailActivity
import org.phonehome.ui.HourlyChart
import org.robolectric.Robolectric
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.annotation.Config
import org.robolectric.annotation.GraphicsMode

/**
 * The contacts-per-hour chart of App detail on a narrow phone (360 dp): it says when (hours in a
 * stated time zone) and how many (the largest count), its labels are drawn, fit and do not
 * overlap, and the screen keeps it below the action bar. PNGs in target/android-shots/.
 */
@RunWith(RobolectricTestRunner::class)
@GraphicsMode(GraphicsMode.Mode.NATIVE)
@Config(
    sdk = [36],
    qualifiers = "w360dp-h640dp-xxhdpi",
    shadows = [ShadowNativeCore::class, ShadowVpnBuilder::class, ShadowTunFd::class],
    instrumentedPackages = ["org.phonehome.core"],
)
class HourlyChartTest {
    private val zoneBefore = TimeZone.getDefault()

    @Before
    fun reset() {
        Harness.freshScreens()
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"))
    }

    @After
    fun restore() {
        TimeZone.setDefault(zoneBefore)
        Harness.restoreLocale()
    }

    private fun open(detail: AppDetail, screen: String): AppDetailActivity {
        FakeCore.snapshot = Canned.running
        FakeCore.appDetail = detail
        val intent = Intent(RuntimeEnvironment.getApplication(), AppDetailActivity::class.java)
            .putExtra(AppDetailActivity.EXTRA_UID, detail.row.app.uid)
        val activity = Robolectric.buildActivity(AppDetailActivity::class.java, intent).setup().get()
        val chart = activity.findViewById<HourlyChart>(R.id.chart)
        Shots.settle("the chart of $screen") { chart.hourLabels.isNotEmpty() }
        Shots.save(activity, screen)
        return activity
    }

    /** What a reader of the chart needs is there and readable; returns the problems. */
    private fun readable(activity: AppDetailActivity, screen: String): List<String> {
        val problems = mutableListOf<String>()
        val chart = activity.findViewById<HourlyChart>(R.id.chart)
        val window = activity.window.decorView
        val at = IntArray(2).also { chart.getLocationInWindow(it) }
        if (window.width != 360 * 3) problems += "$screen: the window is ${window.width} px wide, not 360 dp"
        if (at[0] < 0 || at[0] + chart.width > window.width) problems += "$screen: the chart (x ${at[0]}, ${chart.width} px) leaves the window"
        problems += Harness.underActionBar(activity, screen)
        val labels = chart.countLabels + chart.hourLabels
        for (l in labels) {
            if (l.left < 0 || l.right > chart.width || l.baseline > chart.height) problems += "$screen: label $l is cut off by the chart's bounds"
        }
        chart.hourLabels.zipWithNext { a, b -> if (b.left <= a.right) problems += "$screen: labels $a and $b overlap" }
        // Each label is really drawn: light pixels where it stands.
        val bitmap = Bitmap.createBitmap(chart.width, chart.height, Bitmap.Config.ARGB_8888)
        chart.draw(Canvas(bitmap))
        val textHeight = (12 * 3 * 0.6f).toInt()
        for (l in labels) {
            var lit = 0
            for (x in l.left.toInt() until l.right.toInt().coerceAtMost(chart.width)) {
                for (y in (l.baseline.toInt() - textHeight).coerceAtLeast(0) until l.baseline.toInt()) {
                    val p = bitmap.getPixel(x, y)
                    if ((p ushr 24) > 0x80 && (p shr 16 and 0xff) > 0xa0) lit++
                }
            }
            if (lit < 10) problems += "$screen: label '${l.text}' has $lit lit pixels in its box"
        }
        return problems
    }

    @Test
    fun fourHoursSayWhenAndHowManyOnANarrowPhone() {
        val problems = mutableListOf<String>()
        // The spoken summary's start, and the date at midnight, in each language.
        val words = mapOf(
            "en" to ("42 contacts in 4 hours" to "Jan 1"),
            "nl" to ("42 contacten in 4 uur" to "1 jan"),
            "de" to ("42 Kontakte in 4 Stunden" to "1. Jan"),
        )
        for ((locale, texts) in words) {
            val (spoken, midnight) = texts
            Harness.setLocale(locale)
            val screen = "AppDetailActivity-chart-360dp-$locale"
            val activity = open(Canned.weatherDetail, screen)
            problems += readable(activity, screen)
            val chart = activity.findViewById<HourlyChart>(R.id.chart)
            // Canned: 10, 0, 20 and 12 contacts from 2026-01-01 00:00 UTC.
            assertEquals("$screen: the scale", listOf("20", "0"), chart.countLabels.map { it.text })
            val hours = chart.hourLabels.map { it.text }
            assertEquals("$screen: every one of the 4 hours labelled: $hours", 4, hours.size)
            assertTrue("$screen: midnight is labelled with its date: $hours", hours[0].startsWith(midnight))
            for ((i, h) in hours.drop(1).withIndex()) {
                assertTrue("$screen: hour ${i + 1} reads '$h'", Regex("^0?${i + 1}[:.]00\\b").containsMatchIn(h))
            }
            val title = activity.findViewById<TextView>(R.id.chart_title).text.toString()
            assertEquals("$screen: the zone", "UTC", chart.zoneName)
            assertTrue("$screen: the title '$title' names the zone", "UTC" in title)
            val description = chart.contentDescription.toString()
            assertTrue("$screen: the description '$description'", description.startsWith(spoken) && "UTC" in description && Regex("\\b20\\b").containsMatchIn(description))
            activity.finish()
        }
        assertTrue(problems.joinToString("\n"), problems.isEmpty())
        assertEquals("crashes", emptyList<String>(), Harness.crashes.toList())
    }

    @Test
    fun aWeekOnTheLocalClockIsLabelledAtItsMidnights() {
        TimeZone.setDefault(TimeZone.getTimeZone("Europe/Amsterdam"))
        Harness.setLocale("en")
        // 168 hours from 2026-01-01 00:00 UTC (01:00 in Amsterdam): local midnights at hours
        // 23, 47, …, 167, each labelled with its date (the last one only if it has room).
        val week = Canned.weatherDetail.toBuilder().clearContactsPerHour().addAllContactsPerHour(
            (0 until 168).map { i ->
                HourCount.newBuilder().setHourStartMs(1_767_225_600_000L + i * 3_600_000L).setContacts((i * 7 % 30).toLong()).build()
            },
        ).build()
        val screen = "AppDetailActivity-chart-week-360dp-en"
        val activity = open(week, screen)
        val problems = readable(activity, screen)
        assertTrue(problems.joinToString("\n"), problems.isEmpty())
        val chart = activity.findViewById<HourlyChart>(R.id.chart)
        assertEquals("$screen: the scale", listOf("29", "0"), chart.countLabels.map { it.text })
        val hours = chart.hourLabels.map { it.text }
        assertTrue("$screen: $hours", hours.size >= 6)
        assertEquals("$screen: the local dates", (2 until 2 + hours.size).map { "Jan $it" }, hours)
        assertTrue("$screen: a zone other than UTC: ${chart.zoneName}", chart.zoneName.isNotBlank() && chart.zoneName != "UTC")
        val title = activity.findViewById<TextView>(R.id.chart_title).text.toString()
        assertTrue("$screen: the title '$title' names the zone", chart.zoneName in title)
        val total = week.contactsPerHourList.sumOf { it.contacts }
        val description = chart.contentDescription.toString()
        assertTrue("$screen: the description '$description'", description.startsWith("$total contacts in 168 hours") && chart.zoneName in description)
        activity.finish()
    }
}
