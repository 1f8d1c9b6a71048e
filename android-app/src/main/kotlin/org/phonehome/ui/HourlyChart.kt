package org.phonehome.ui

import android.content.Context
import android.graphics.Canvas
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import org.phonehome.R

/**
 * Bars of counts per hour, oldest on the left, drawn on a Canvas (no chart library). The counts
 * come from the core (`AppDetail.contacts_per_hour`, every hour present); this only draws them.
 */
class HourlyChart @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    private val bar = Paint(Paint.ANTI_ALIAS_FLAG).apply { color = context.getColor(R.color.accent) }
    private val axis = Paint().apply {
        color = context.getColor(R.color.warning)
        strokeWidth = resources.displayMetrics.density
    }
    private var counts: List<Long> = emptyList()

    fun show(perHour: List<Long>) {
        counts = perHour
        val total = perHour.sum()
        contentDescription = context.getString(R.string.cd_chart, total, perHour.size, perHour.maxOrNull() ?: 0L)
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val left = paddingLeft.toFloat()
        val bottom = (height - paddingBottom).toFloat()
        val width = (this.width - paddingLeft - paddingRight).toFloat()
        val height = bottom - paddingTop
        canvas.drawLine(left, bottom, left + width, bottom, axis)
        val max = counts.maxOrNull() ?: return
        if (max <= 0 || width <= 0f || height <= 0f) return
        val slot = width / counts.size
        val gap = if (slot > 4f) slot / 5f else 0f
        counts.forEachIndexed { i, count ->
            if (count == 0L) return@forEachIndexed
            val top = bottom - height * count / max
            canvas.drawRect(left + i * slot + gap / 2, top, left + (i + 1) * slot - gap / 2, bottom, bar)
        }
    }
}
