package org.phonehome.ui

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class HourTicksTest {
    /** Hours from local hour [first] (hours since the epoch on the local clock) on. */
    private fun pick(count: Int, slot: Float, first: Long, width: (Int) -> Float = { 40f }) =
        HourTicks.pick(count, slot, gap = 8f, localHour = { first + it }, widthOf = width)

    private fun assertApartAndInside(ticks: List<HourTicks.Tick>, total: Float) {
        for (t in ticks) assertTrue("$t inside 0..$total", t.left >= 0f && t.right <= total)
        ticks.zipWithNext { a, b -> assertTrue("$a and $b are 8 px apart", b.left >= a.right + 8f) }
    }

    @Test
    fun wideHoursAreEachLabelled() {
        // Four hours on a 360 dp phone (about 80 dp each): every hour has room for its label.
        val ticks = pick(4, slot = 80f, first = 24L * 20_454)
        assertEquals(listOf(0, 1, 2, 3), ticks.map { it.index })
        assertApartAndInside(ticks, 4 * 80f)
    }

    @Test
    fun aWeekIsLabelledAtLocalMidnights() {
        // 168 hours in 420 px: 2.5 px an hour; labels of 40 px need a step of 24 hours. The
        // last midnight's label is pushed inside the right edge and still clears its neighbour.
        val first = 24L * 20_454 + 5 // 05:00 local
        val ticks = pick(168, slot = 2.5f, first = first)
        assertEquals((0 until 7).map { 19 + 24 * it }, ticks.map { it.index })
        assertEquals(420f, ticks.last().right)
        assertApartAndInside(ticks, 420f)
    }

    @Test
    fun wideTimeLabelsDoNotWidenTheStepOfNarrowDates() {
        // Dates of 30 px at midnight, times of 100 px otherwise, 3 px an hour: daily labels fit
        // (72 px a day), although a time label would need 36 hours.
        val first = 24L * 20_454
        val ticks = pick(72, slot = 3f, first = first, width = { if ((first + it) % 24 == 0L) 30f else 100f })
        assertEquals(listOf(0, 24, 48), ticks.map { it.index })
        assertApartAndInside(ticks, 216f)
    }

    @Test
    fun stepsFollowTheLocalClockNotUtc() {
        // The same UTC hours one hour later on the local clock: the 6-hourly labels move one bar left.
        // From 22:00: labels of 40 px in 10 px hours need a step of 6 hours.
        val utc = pick(24, slot = 10f, first = 24L * 20_454 - 2).map { it.index }
        val plusOne = pick(24, slot = 10f, first = 24L * 20_454 - 1).map { it.index }
        assertEquals(listOf(2, 8, 14, 20), utc)
        assertEquals(listOf(1, 7, 13, 19), plusOne)
    }

    @Test
    fun aWideFirstLabelStartsAtTheEdgeAndClearsItsNeighbour() {
        // A date label (70 px) at midnight and times (35 px) after it, in 30 px hours: a step of 3.
        val ticks = pick(12, slot = 30f, first = 24L * 20_454, width = { if (it == 0) 70f else 35f })
        assertApartAndInside(ticks, 12 * 30f)
        assertEquals(listOf(0, 3, 6, 9), ticks.map { it.index })
        assertEquals(0f, ticks.first().left)
    }

    @Test
    fun tooFewHoursForARoundOneStillSayWhenTheChartStarts() {
        // Three hours from 01:00 at a step of 4: no round hour among them, so the first is labelled.
        val ticks = pick(3, slot = 12f, first = 24L * 20_454 + 1, width = { 30f })
        assertEquals(listOf(0), ticks.map { it.index })
        assertApartAndInside(ticks, 36f)
    }

    @Test
    fun aLabelWiderThanTheChartIsNotDrawn() {
        assertEquals(emptyList<HourTicks.Tick>(), pick(1, slot = 30f, first = 0, width = { 31f }))
        assertEquals(emptyList<HourTicks.Tick>(), pick(0, slot = 30f, first = 0))
    }
}
