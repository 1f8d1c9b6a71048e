package org.phonehome.ui

import android.app.Activity
import android.widget.TextView
import org.phonehome.R

/**
 * The set-up every screen that shows one answer of the core repeats: its layout fitted edge to
 * edge, and the core call off the UI thread whose failure the screen's status line says.
 */
object CoreScreen {
    /** Sets [layout] as [activity]'s content, kept clear of the bars (see [EdgeToEdge]). */
    fun setContent(activity: Activity, layout: Int) {
        activity.setContentView(layout)
        EdgeToEdge.fit(activity)
    }

    /**
     * Runs [work] on [Background]; hands its answer to [shown], or writes its error into [status].
     * Nothing happens once [activity] is destroyed: its views are gone.
     */
    fun <T> load(activity: Activity, status: TextView, work: () -> T, shown: (T) -> Unit) {
        Background.run(work) { result ->
            if (activity.isDestroyed) return@run
            result.onSuccess(shown).onFailure { status.text = activity.getString(R.string.error_query, it.message) }
        }
    }
}
