package org.phonehome.robolectric

import android.app.Activity
import android.content.pm.PackageManager
import android.graphics.Rect
import android.view.View
import android.view.ViewGroup
import java.util.Locale
import org.robolectric.RuntimeEnvironment

/** What every screen test checks, whatever the screen. */
object Harness {
    /**
     * Exceptions that reached a thread's top: on Android each one kills the app's process.
     * [watchCrashes] (or [freshScreens]) in @Before; tests assert [crashes] stays empty.
     */
    val crashes: MutableList<String> = java.util.Collections.synchronizedList(mutableListOf())

    fun watchCrashes() {
        crashes.clear()
        Thread.setDefaultUncaughtExceptionHandler { thread, e -> crashes += "${thread.name}: $e" }
    }

    /** The @Before of a screen test: a fresh stand-in core and VPN builder, crashes watched. */
    fun freshScreens() {
        FakeCore.reset()
        ShadowVpnBuilder.reset()
        watchCrashes()
    }

    /** The languages the app ships (res/values-*), plus the default. */
    val locales = listOf("en", "nl", "de")

    /** Every Activity of the linked manifest, so a new screen is covered without a new test. */
    fun activities(): List<Class<out Activity>> {
        val context = RuntimeEnvironment.getApplication()
        val info = context.packageManager.getPackageInfo(context.packageName, PackageManager.GET_ACTIVITIES)
        @Suppress("UNCHECKED_CAST")
        return info.activities.orEmpty().map { Class.forName(it.name) as Class<out Activity> }
    }

    private val jvmLocale: Locale = Locale.getDefault()

    /** The app's resources and, as Android sets it for the app's process, the default locale (dates, numbers). */
    fun setLocale(locale: String) {
        RuntimeEnvironment.setQualifiers("+$locale")
        Locale.setDefault(Locale.forLanguageTag(locale))
    }

    /** In @After: the JVM's locale back for the test classes that run next in the same JVM. */
    fun restoreLocale() = Locale.setDefault(jvmLocale)

    /** The visible leaf views of the screen's content (what the layout put there). */
    fun visibleLeaves(activity: Activity): List<View> {
        val out = mutableListOf<View>()
        fun walk(view: View) {
            if (view.visibility != View.VISIBLE || view.width == 0 || view.height == 0) return
            if (view is ViewGroup && view.childCount > 0) {
                for (i in 0 until view.childCount) walk(view.getChildAt(i))
            } else {
                out += view
            }
        }
        walk(activity.findViewById(android.R.id.content))
        return out
    }

    /** The views of the content that start above the action bar's bottom edge (drawn under it). */
    fun underActionBar(activity: Activity, screen: String): List<String> {
        val decor = activity.window.decorView
        val barId = activity.resources.getIdentifier("action_bar_container", "id", "android")
        val bar = decor.findViewById<View>(barId)
        if (bar == null || bar.visibility != View.VISIBLE || bar.height == 0) return listOf("$screen: the window has no action bar")
        val barRect = Rect()
        bar.getGlobalVisibleRect(barRect)
        val leaves = visibleLeaves(activity)
        if (leaves.isEmpty()) return listOf("$screen: nothing visible on the screen")
        return leaves.mapNotNull { view ->
            val location = IntArray(2)
            view.getLocationInWindow(location)
            if (location[1] >= barRect.bottom) null
            else "$screen: ${describe(view)} at y=${location[1]} lies under the action bar (bottom ${barRect.bottom})"
        }
    }

    fun describe(view: View): String {
        val name = if (view.id != View.NO_ID) runCatching { view.resources.getResourceEntryName(view.id) }.getOrNull() else null
        return "${view.javaClass.simpleName}${name?.let { " @id/$it" } ?: ""}"
    }
}
