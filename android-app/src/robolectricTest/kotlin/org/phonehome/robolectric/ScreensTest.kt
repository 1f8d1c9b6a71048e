package org.phonehome.robolectric

import android.app.Activity
import android.content.Intent
import android.view.View
import android.widget.ListView
import android.widget.PopupMenu
import android.widget.TextView
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith
import org.phonehome.R
import org.phonehome.proto.AppRow
import org.phonehome.ui.AppDetailActivity
import org.phonehome.ui.LiveActivity
import org.robolectric.Robolectric
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.annotation.Config
import org.robolectric.annotation.GraphicsMode

/**
 * Every screen drawn with the aapt2-linked resources, in every shipped language, with a stand-in
 * core answering canned snapshots. PNGs go to target/android-shots/.
 */
@RunWith(RobolectricTestRunner::class)
@GraphicsMode(GraphicsMode.Mode.NATIVE)
@Config(sdk = [36], shadows = [ShadowNativeCore::class, ShadowVpnBuilder::class, ShadowTunFd::class], instrumentedPackages = ["org.phonehome.core"])
class ScreensTest {
    @Before
    fun reset() {
        Harness.freshScreens()
    }

    @After
    fun restoreLocale() = Harness.restoreLocale()

    /** As after process death: the system recreates any screen with its intent alone, nothing else set up. */
    @Test
    fun everyActivityLaunchedDirectly() {
        val activities = Harness.activities()
        assertTrue("the manifest lists ${activities.size} activities", activities.size >= 6)
        FakeCore.snapshot = Canned.running
        val crashed = mutableListOf<String>()
        for (locale in Harness.locales) {
            Harness.setLocale(locale)
            for (cls in activities) {
                Harness.crashes.clear()
                val screen = "${cls.simpleName}-direct-$locale"
                FakeCore.loaded = false // a new process: libphonehome.so is not loaded yet
                val activity = Robolectric.buildActivity(cls, Intent(RuntimeEnvironment.getApplication(), cls)).setup().get()
                Shots.settle()
                Shots.save(activity, screen)
                assertTrue("$screen finished itself", !activity.isFinishing)
                assertTrue("$screen shows nothing", Harness.visibleLeaves(activity).isNotEmpty())
                if (Harness.crashes.isNotEmpty()) crashed += "$screen crashed the app: ${Harness.crashes}"
                activity.finish()
            }
        }
        assertTrue(crashed.joinToString("\n"), crashed.isEmpty())
    }

    /** Since targetSdk 35 windows are edge-to-edge: the layout itself must keep clear of the bars. */
    @Test
    fun noScreenDrawsUnderTheActionBar() {
        FakeCore.snapshot = Canned.running
        val problems = mutableListOf<String>()
        for (locale in Harness.locales) {
            Harness.setLocale(locale)
            for (cls in Harness.activities()) {
                val activity = Robolectric.buildActivity(cls, Intent(RuntimeEnvironment.getApplication(), cls)).setup().get()
                Shots.settle()
                problems += Harness.underActionBar(activity, "${cls.simpleName}-$locale")
                activity.finish()
            }
        }
        assertTrue(problems.joinToString("\n"), problems.isEmpty())
        assertTrue("crashes: ${Harness.crashes}", Harness.crashes.isEmpty())
    }

    @Test
    fun liveShowsEveryAppWithItsCounts() {
        FakeCore.snapshot = Canned.running
        for (locale in Harness.locales) {
            Harness.setLocale(locale)
            val activity = Robolectric.buildActivity(LiveActivity::class.java).setup().get()
            val list = activity.findViewById<ListView>(R.id.apps)
            Shots.settle("3 rows on Live ($locale)") { list.adapter.count == 3 && list.childCount >= 2 }
            Shots.save(activity, "LiveActivity-rows-$locale")
            val rows = (0 until list.childCount).map { list.getChildAt(it) }
            val names = rows.map { it.findViewById<TextView>(R.id.app_name).text.toString() }
            assertTrue("$locale: rows $names", names.any { "Weather" in it } && names.any { "Browser" in it })
            val weather = rows[names.indexOfFirst { "Weather" in it }]
            val xiaomi = weather.findViewById<TextView>(R.id.app_xiaomi)
            val counts = weather.findViewById<TextView>(R.id.app_counts).text.toString()
            // 17 contacts to Xiaomi over 3 hosts, of 42 in all: each number the row shows is the canned one.
            assertEquals("$locale: Weather's Xiaomi line", View.VISIBLE, xiaomi.visibility)
            for (n in listOf("17", "3")) assertTrue("$locale: Weather's Xiaomi line '${xiaomi.text}' lacks $n", Regex("\\b$n\\b").containsMatchIn(xiaomi.text))
            assertTrue("$locale: Weather's counts '$counts' lack 42", Regex("\\b42\\b").containsMatchIn(counts))
            val status = activity.findViewById<TextView>(R.id.status).text.toString()
            assertTrue("$locale: status '$status' lacks 56 flows / 17 to Xiaomi", "56" in status && "17" in status)
            activity.finish()
        }
    }

    /** The highlighted Xiaomi line is there for an app that contacted Xiaomi, and only then. */
    @Test
    fun xiaomiLineOnlyForAppsWithXiaomiContacts() {
        FakeCore.snapshot = Canned.running
        val accent = RuntimeEnvironment.getApplication().getColor(R.color.accent)
        for (locale in Harness.locales) {
            Harness.setLocale(locale)
            val activity = Robolectric.buildActivity(LiveActivity::class.java).setup().get()
            val list = activity.findViewById<ListView>(R.id.apps)
            Shots.settle("3 rows on Live ($locale)") { list.adapter.count == 3 && list.childCount >= 2 }
            Shots.save(activity, "LiveActivity-xiaomi-line-$locale")
            // Every row as the adapter makes it, also those below the bottom of the window.
            val rows = (0 until list.adapter.count).map { list.adapter.getItem(it) as AppRow to list.adapter.getView(it, null, list) }
            for ((app, row) in rows) {
                val xiaomi = row.findViewById<TextView>(R.id.app_xiaomi)
                val counts = row.findViewById<TextView>(R.id.app_counts)
                val shown = xiaomi.visibility == View.VISIBLE
                val who = "$locale: ${app.app.label.ifEmpty { "unattributed" }}"
                assertEquals("$who has ${app.xiaomiFlows} Xiaomi contacts; its Xiaomi line shown", app.xiaomiFlows > 0, shown)
                if (shown) {
                    assertEquals("$who: the Xiaomi line is highlighted", accent, xiaomi.currentTextColor)
                } else {
                    assertTrue("$who: no Xiaomi count anywhere in the row: '${row.contentDescription}'", "Xiaomi" !in row.contentDescription)
                }
                assertTrue("$who: the other counts are not highlighted", counts.currentTextColor != accent)
            }
            assertEquals("$locale: one row with Xiaomi contacts of three", 1, rows.count { it.second.findViewById<TextView>(R.id.app_xiaomi).visibility == View.VISIBLE })
            activity.finish()
        }
    }

    /** Through the app's own navigation: a row opens its app, the menu opens every other screen. */
    @Test
    fun everyScreenThroughTheAppsNavigation() {
        FakeCore.snapshot = Canned.running
        FakeCore.appDetail = Canned.weatherDetail
        for (locale in Harness.locales) {
            Harness.setLocale(locale)
            val live = Robolectric.buildActivity(LiveActivity::class.java).setup().get()
            val list = live.findViewById<ListView>(R.id.apps)
            Shots.settle("3 rows on Live ($locale)") { list.adapter.count == 3 && list.childCount >= 1 }
            val row = (0 until list.count).first { list.adapter.getItem(it) == Canned.weather }
            list.performItemClick(list.getChildAt(row), row, list.adapter.getItemId(row))
            val detailIntent = shadowOf(live).nextStartedActivity
            assertEquals(AppDetailActivity::class.java.name, detailIntent.component?.className)
            val detail = Robolectric.buildActivity(AppDetailActivity::class.java, detailIntent).setup().get()
            val endpoints = detail.findViewById<ListView>(R.id.list)
            Shots.settle("2 endpoints on the app's screen ($locale)") { endpoints.childCount == 2 }
            Shots.save(detail, "AppDetailActivity-nav-$locale")
            val header = detail.findViewById<TextView>(R.id.header).text.toString()
            assertTrue("$locale: header '$header'", "com.miui.weather2" in header && "10123" in header && Regex("\\b42\\b").containsMatchIn(header) && Regex("\\b17\\b").containsMatchIn(header))
            val companies = detail.findViewById<TextView>(R.id.companies)
            assertEquals("$locale: the companies line", View.VISIBLE, companies.visibility)
            assertTrue("$locale: companies '${companies.text}'", Regex("Xiaomi: 17\\b.*Google: 4\\b").containsMatchIn(companies.text))
            val chart = detail.findViewById<View>(R.id.chart)
            assertEquals("$locale: the chart", View.VISIBLE, chart.visibility)
            assertTrue("$locale: chart says '${chart.contentDescription}'", Regex("^42\\b.*\\b4\\b.*\\b20\\b").containsMatchIn(chart.contentDescription))
            detail.finish()

            // The Live menu as the app inflates it; each item goes through the app's own handler.
            val menu = PopupMenu(live, list).menu
            live.onCreateOptionsMenu(menu)
            assertTrue("$locale: the Live menu has ${menu.size()} items", menu.size() >= 4)
            for (i in 0 until menu.size()) {
                val item = menu.getItem(i)
                live.onOptionsItemSelected(item)
                val intent = shadowOf(live).nextStartedActivity ?: continue
                @Suppress("UNCHECKED_CAST")
                val cls = Class.forName(intent.component!!.className) as Class<out Activity>
                val screen = Robolectric.buildActivity(cls, intent).setup().get()
                Shots.settle()
                Shots.save(screen, "${cls.simpleName}-nav-$locale")
                assertTrue("${cls.simpleName}-nav-$locale shows nothing", Harness.visibleLeaves(screen).isNotEmpty())
                screen.finish()
            }
        }
    }
}
