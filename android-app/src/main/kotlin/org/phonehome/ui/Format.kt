package org.phonehome.ui

import android.content.Context
import android.text.format.DateUtils
import android.text.format.Formatter
import org.phonehome.R
import org.phonehome.proto.AppIdentity
import org.phonehome.proto.AppRow
import org.phonehome.proto.Destination

/** Text for numbers, times and names, shared by the screens. */
object Format {
    fun bytes(context: Context, n: Long): String = Formatter.formatShortFileSize(context, n)

    fun time(context: Context, ms: Long): String =
        if (ms <= 0) "–" else DateUtils.formatDateTime(context, ms, DateUtils.FORMAT_SHOW_TIME or DateUtils.FORMAT_SHOW_DATE or DateUtils.FORMAT_ABBREV_ALL)

    /** [n] and what it counts, in the form the language gives that number ("1 contact", "2 contacts"). */
    fun count(context: Context, plural: Int, n: Long): String = context.resources.getQuantityString(plural, quantity(n), n)

    /** The quantity getQuantityString picks the plural form by: an Int, past whose range every shipped language says "other". */
    fun quantity(n: Long): Int = n.coerceIn(0L, Int.MAX_VALUE.toLong()).toInt()

    /** The label, or the first package, or the UID. */
    fun appName(context: Context, row: AppRow): String = when {
        row.unattributed -> context.getString(R.string.app_unattributed)
        row.hasApp() -> appName(row.app)
        else -> "?"
    }

    fun appName(app: AppIdentity): String = when {
        app.label.isNotEmpty() -> app.label
        app.packagesCount > 0 -> app.getPackages(0)
        else -> "UID ${app.uid}"
    }

    /** "com.a, com.b +3" for shared UIDs. */
    fun packages(app: AppIdentity): String {
        val shown = app.packagesList.take(2).joinToString(", ")
        val more = app.packagesCount - 2
        return if (more > 0) "$shown +$more" else shown
    }

    /** "Xiaomi · analytics/telemetry (guess) · via Akamai · SG"; the company when not the vendor. */
    fun destination(context: Context, d: Destination): String {
        val category = when {
            d.category.isEmpty() -> ""
            d.categoryGuessed -> context.getString(R.string.category_guessed, d.category)
            else -> d.category
        }
        val company = if (d.company.equals(d.vendor, ignoreCase = true)) "" else d.company
        val provider = if (d.provider.isEmpty() || d.provider == d.company) "" else context.getString(R.string.via_provider, d.provider)
        return listOf(d.vendor, company, category, provider, d.country).filter { it.isNotEmpty() }.joinToString(" · ")
    }

    fun isXiaomi(d: Destination): Boolean = d.vendor.equals("xiaomi", ignoreCase = true)
}
