package org.phonehome.ui

import android.content.Context
import android.graphics.Canvas
import android.graphics.Paint
import android.text.format.DateUtils
import android.util.AttributeSet
import android.util.TypedValue
import android.view.View
import java.util.Date
import java.util.TimeZone
import org.phonehome.R
import org.phonehome.proto.HourCount

/**
 * Bars of contacts per hour, oldest on the left, drawn on a Canvas (no chart library), with the
 * scale a reader needs: the largest count at the top line and 0 at the base on the left, and
 * round local hours under the bars (dates at midnight) in the time zone [zoneName] names. The
 * counts come from the core (`AppDetail.contacts_per_hour`, every hour present); this only draws them.
 */
class HourlyChart @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    /** A text the chart draws, from [left] to [right] px with its baseline at [baseline] (view coordinates). */
    data class Label(val text: String, val left: Float, val right: Float, val baseline: Float)

    private val density = resources.displayMetrics.density
    private val bar = Paint(Paint.ANTI_ALIAS_FLAG).apply { color = context.getColor(R.color.accent) }
    private val axis = Paint().apply {
        color = context.getColor(R.color.warning)
        strokeWidth = density
    }
    private val grid = Paint().apply {
        color = context.getColor(R.color.chart_grid)
        strokeWidth = density
    }
    private val text = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = context.getColor(R.color.chart_label)
        textSize = TypedValue.applyDimension(TypedValue.COMPLEX_UNIT_SP, 12f, resources.displayMetrics)
    }
    private var hours: List<HourCount> = emptyList()
    private var zone: TimeZone = TimeZone.getDefault()
    private var plotLeft = 0f
    private var plotTop = 0f
    private var plotRight = 0f
    private var plotBottom = 0f

    /** The time zone the hour labels are in, as the screen states it ("CET", "GMT+05:30"). */
    var zoneName: String = ""
        private set

    /** The count labels (largest, then 0) at the left of the bars, as last laid out. */
    var countLabels: List<Label> = emptyList()
        private set

    /** The hour labels under the bars, oldest first, as last laid out. */
    var hourLabels: List<Label> = emptyList()
        private set

    fun show(perHour: List<HourCount>) {
        hours = perHour
        zone = TimeZone.getDefault()
        val lastMs = perHour.lastOrNull()?.hourStartMs ?: System.currentTimeMillis()
        zoneName = zone.getDisplayName(zone.inDaylightTime(Date(lastMs)), TimeZone.SHORT, resources.configuration.locales[0])
        val counts = perHour.map { it.contacts }
        contentDescription = if (perHour.isEmpty()) {
            ""
        } else {
            context.getString(
                R.string.cd_chart,
                Format.count(context, R.plurals.count_contacts, counts.sum()),
                Format.count(context, R.plurals.count_hours, perHour.size.toLong()),
                Format.time(context, perHour.first().hourStartMs),
                Format.time(context, lastMs + HOUR_MS),
                zoneName,
                counts.max(),
            )
        }
        relabel()
        invalidate()
    }

    override fun onSizeChanged(w: Int, h: Int, oldw: Int, oldh: Int) {
        super.onSizeChanged(w, h, oldw, oldh)
        relabel()
    }

    /** Where the plot, the count labels and the hour labels go at the current size. */
    private fun relabel() {
        val metrics = text.fontMetrics
        val line = metrics.descent - metrics.ascent
        // A baseline that puts the text's middle on a given height.
        val centred = (metrics.ascent + metrics.descent) / -2
        val max = hours.maxOfOrNull { it.contacts } ?: 0L
        val countTexts = if (max > 0) listOf(max.toString(), "0") else listOf("0")
        val gutter = countTexts.maxOf { text.measureText(it) } + 4 * density
        plotLeft = paddingLeft + gutter
        plotRight = (width - paddingRight).toFloat()
        plotTop = paddingTop + line / 2
        plotBottom = height - paddingBottom - line - 2 * density
        if (plotRight <= plotLeft || plotBottom <= plotTop || hours.isEmpty()) {
            countLabels = emptyList()
            hourLabels = emptyList()
            return
        }
        countLabels = countTexts.zip(if (max > 0) listOf(plotTop, plotBottom) else listOf(plotBottom)) { label, y ->
            Label(label, plotLeft - 4 * density - text.measureText(label), plotLeft - 4 * density, y + centred)
        }
        val slot = (plotRight - plotLeft) / hours.size
        val texts = hours.map { hourText(it.hourStartMs) }
        val baseline = plotBottom + 2 * density - metrics.ascent
        hourLabels = HourTicks.pick(
            hours.size,
            slot,
            gap = 8 * density,
            localHour = { localHour(hours[it].hourStartMs) },
            widthOf = { text.measureText(texts[it]) },
        ).map { Label(texts[it.index], plotLeft + it.left, plotLeft + it.right, baseline) }
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        if (plotRight <= plotLeft || plotBottom <= plotTop) return
        canvas.drawLine(plotLeft, plotBottom, plotRight, plotBottom, axis)
        (countLabels + hourLabels).forEach { canvas.drawText(it.text, it.left, it.baseline, text) }
        val max = hours.maxOfOrNull { it.contacts } ?: return
        if (max <= 0) return
        canvas.drawLine(plotLeft, plotTop, plotRight, plotTop, grid)
        val slot = (plotRight - plotLeft) / hours.size
        val gap = if (slot > 4f) slot / 5f else 0f
        val height = plotBottom - plotTop
        hours.forEachIndexed { i, hour ->
            if (hour.contacts == 0L) return@forEachIndexed
            val top = plotBottom - height * hour.contacts / max
            canvas.drawRect(plotLeft + i * slot + gap / 2, top, plotLeft + (i + 1) * slot - gap / 2, plotBottom, bar)
        }
    }

    /** The hour's number since the epoch on the local clock (DST included). */
    private fun localHour(ms: Long): Long = Math.floorDiv(ms + zone.getOffset(ms), HOUR_MS)

    /** "14:00" (or "2:00 PM", as the phone is set), or the date for a local midnight. */
    private fun hourText(ms: Long): String {
        val flags = if (Math.floorMod(localHour(ms), 24L) == 0L) DATE else DateUtils.FORMAT_SHOW_TIME
        return DateUtils.formatDateTime(context, ms, flags)
    }

    private companion object {
        const val HOUR_MS = 3_600_000L
        const val DATE = DateUtils.FORMAT_SHOW_DATE or DateUtils.FORMAT_NO_YEAR or DateUtils.FORMAT_ABBREV_MONTH
    }
}
