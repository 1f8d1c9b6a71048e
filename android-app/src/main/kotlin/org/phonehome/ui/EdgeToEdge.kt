package org.phonehome.ui

import android.app.Activity
import android.os.Build
import android.view.View
import android.view.ViewGroup
import android.view.WindowInsets

/**
 * Android 15+ draws a window of a targetSdk-35+ app edge to edge: the status bar, the navigation
 * bar and, with the framework action bar, the action bar itself can lie over the layout. This
 * keeps the layout's own padding and adds what the bars cover, without AndroidX: the side and
 * bottom insets from the window, the top from where the action bar (or else the status bar)
 * actually ends, measured after layout so it is right with and without edge-to-edge.
 */
object EdgeToEdge {
    fun fit(activity: Activity) {
        val content = activity.findViewById<ViewGroup>(android.R.id.content) ?: return
        val root = content.getChildAt(0) ?: return
        val base = intArrayOf(root.paddingLeft, root.paddingTop, root.paddingRight, root.paddingBottom)
        val bars = intArrayOf(0, 0, 0, 0)
        val actionBarId = activity.resources.getIdentifier("action_bar_container", "id", "android")
        fun apply() {
            val top = maxOf(bars[1], overlapAtTop(activity, root, actionBarId))
            val wanted = intArrayOf(base[0] + bars[0], base[1] + top, base[2] + bars[2], base[3] + bars[3])
            if (wanted[0] != root.paddingLeft || wanted[1] != root.paddingTop ||
                wanted[2] != root.paddingRight || wanted[3] != root.paddingBottom
            ) {
                root.setPadding(wanted[0], wanted[1], wanted[2], wanted[3])
            }
        }
        root.setOnApplyWindowInsetsListener { view, insets ->
            val covered = coveredBy(insets)
            val location = IntArray(2).also { view.getLocationInWindow(it) }
            bars[0] = covered[0]
            // The status bar only covers the part of the layout that starts above its bottom.
            bars[1] = maxOf(0, covered[1] - location[1])
            bars[2] = covered[2]
            bars[3] = covered[3]
            apply()
            insets
        }
        root.addOnLayoutChangeListener { _, _, _, _, _, _, _, _, _ -> root.post { apply() } }
        root.requestApplyInsets()
    }

    /** Left, top, right, bottom of the system bars and the display cutout. */
    private fun coveredBy(insets: WindowInsets): IntArray =
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
            val bars = insets.getInsets(WindowInsets.Type.systemBars() or WindowInsets.Type.displayCutout())
            intArrayOf(bars.left, bars.top, bars.right, bars.bottom)
        } else {
            @Suppress("DEPRECATION")
            intArrayOf(insets.systemWindowInsetLeft, insets.systemWindowInsetTop, insets.systemWindowInsetRight, insets.systemWindowInsetBottom)
        }

    /** How far the visible action bar reaches below the top of [root] (0 if it does not). */
    private fun overlapAtTop(activity: Activity, root: View, actionBarId: Int): Int {
        if (actionBarId == 0) return 0
        val bar = activity.window.decorView.findViewById<View>(actionBarId) ?: return 0
        if (bar.visibility != View.VISIBLE || bar.height == 0) return 0
        val barAt = IntArray(2).also { bar.getLocationInWindow(it) }
        val rootAt = IntArray(2).also { root.getLocationInWindow(it) }
        val barBottom = barAt[1] + bar.height
        // The root's own top padding is ours; compare with where its box starts.
        return maxOf(0, barBottom - rootAt[1])
    }
}
