package org.phonehome.ui

import org.junit.Assert.assertEquals
import org.junit.Test
import org.phonehome.proto.AppIdentity
import org.phonehome.proto.AppRow

class AppFilterTest {
    private val system = AppRow.newBuilder()
        .setApp(AppIdentity.newBuilder().setUid(1000).setLabel("Android System").addAllPackages(listOf("android", "com.miui.analytics")))
        .setXiaomiFlows(12)
        .build()
    private val browser = AppRow.newBuilder()
        .setApp(AppIdentity.newBuilder().setUid(10123).setLabel("Firefox").addPackages("org.mozilla.firefox"))
        .build()
    private val rows = listOf(system, browser)

    private fun shown(query: String, xiaomiOnly: Boolean) =
        rows.filter { AppFilter.matches(it, it.app.label, query, xiaomiOnly) }.map { it.app.uid }

    @Test
    fun searchCoversLabelsAndEveryPackageOfASharedUid() {
        assertEquals(listOf(1000, 10123), shown("", xiaomiOnly = false))
        assertEquals(listOf(1000), shown("ANALYTICS", xiaomiOnly = false))
        assertEquals(listOf(10123), shown(" fire ", xiaomiOnly = false))
        assertEquals(emptyList<Int>(), shown("whatsapp", xiaomiOnly = false))
    }

    @Test
    fun xiaomiOnlyKeepsAppsThatContactedXiaomi() {
        assertEquals(listOf(1000), shown("", xiaomiOnly = true))
        assertEquals(emptyList<Int>(), shown("firefox", xiaomiOnly = true))
    }
}
