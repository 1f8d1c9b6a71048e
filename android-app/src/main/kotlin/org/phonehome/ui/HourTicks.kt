package org.phonehome.ui

/**
 * Which hours of the contacts-per-hour chart carry a label under their bar. Labels sit on round
 * local hours, every 1, 2, 3, 4, 6 or 12 hours or at midnight every 1, 2 or 7 days: the smallest
 * step whose widest label (of those it would draw) fits its share of the width. A label that would still touch its
 * neighbour (or the chart's edge pushes into it) is left out, so none overlap at any width.
 */
object HourTicks {
    private val STEPS = longArrayOf(1, 2, 3, 4, 6, 12, 24, 48, 168)

    /** The label of hour [index], drawn from [left] px (from the chart's left edge) to [right]. */
    data class Tick(val index: Int, val left: Float, val right: Float)

    /**
     * [count] hours of [slot] px each, oldest first; [localHour]: the hour's number since the
     * epoch in local time (its UTC offset applied), so steps fall on local clock hours;
     * [widthOf]: the width in px of the hour's label; [gap]: px kept free between two labels.
     */
    fun pick(count: Int, slot: Float, gap: Float, localHour: (Int) -> Long, widthOf: (Int) -> Float): List<Tick> {
        if (count <= 0 || slot <= 0f) return emptyList()
        val widths = FloatArray(count) { widthOf(it) }
        // A step is judged by the labels it would draw: at midnight steps those are dates, which
        // can be narrower than "10:00 PM".
        fun widest(step: Long) = (0 until count).filter { Math.floorMod(localHour(it), step) == 0L }.maxOfOrNull { widths[it] } ?: widths[0]
        val step = STEPS.firstOrNull { it * slot >= widest(it) + gap } ?: STEPS.last()
        val total = count * slot
        val ticks = mutableListOf<Tick>()
        for (i in 0 until count) {
            if (Math.floorMod(localHour(i), step) != 0L) continue
            val tick = place(i, slot, widths[i], total) ?: continue
            if (ticks.isEmpty() || tick.left >= ticks.last().right + gap) ticks += tick
        }
        // Too few hours for a round one: the oldest hour still says when the chart starts.
        if (ticks.isEmpty()) place(0, slot, widths[0], total)?.let { ticks += it }
        return ticks
    }

    /** Centred under its bar, moved inwards at the chart's edges; null if wider than the chart. */
    private fun place(index: Int, slot: Float, width: Float, total: Float): Tick? {
        if (width > total) return null
        val left = ((index + 0.5f) * slot - width / 2).coerceIn(0f, total - width)
        return Tick(index, left, left + width)
    }
}
