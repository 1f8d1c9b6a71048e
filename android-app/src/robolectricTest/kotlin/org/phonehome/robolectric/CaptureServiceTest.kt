package org.phonehome.robolectric

import android.app.NotificationManager
import android.content.ComponentName
import android.content.Intent
import android.content.pm.ServiceInfo
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith
import org.phonehome.R
import org.phonehome.settings.Settings
import org.phonehome.vpn.CaptureService
import org.phonehome.vpn.TunnelPlan
import org.robolectric.Robolectric
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.android.controller.ServiceController
import org.robolectric.annotation.Config

/** The VpnService on the JVM: what it asks Android's Builder for, and what it does when that fails. */
@RunWith(RobolectricTestRunner::class)
@Config(sdk = [36], shadows = [ShadowNativeCore::class, ShadowVpnBuilder::class, ShadowTunFd::class], instrumentedPackages = ["org.phonehome.core"])
class CaptureServiceTest {
    private val app = RuntimeEnvironment.getApplication()

    @Before
    fun reset() {
        FakeCore.reset()
        ShadowVpnBuilder.reset()
        // The service's state is a process-wide static; each test starts from a fresh process.
        CaptureService::class.java.getDeclaredField("state").apply { isAccessible = true }
            .set(null, CaptureService.State(running = false, privateDnsStrict = false, error = null))
        Harness.watchCrashes()
    }

    private fun start(): ServiceController<CaptureService> {
        val controller = Robolectric.buildService(
            CaptureService::class.java,
            Intent(app, CaptureService::class.java).setAction(CaptureService.ACTION_START),
        )
        controller.create().startCommand(0, 1)
        return controller
    }

    @Test
    fun builderGetsTheTunnelPlanAndExcludesTheAppItself() {
        Settings(app).ipv6 = true
        ShadowVpnBuilder.establishResult = ShadowVpnBuilder.Establish.TUN
        start()
        Shots.settle("the core started on the tunnel") { FakeCore.startedFd != null }
        val builder = ShadowVpnBuilder.last!!
        val plan = TunnelPlan(ipv6 = true)
        assertEquals(listOf("${plan.addressV4}/${plan.prefixV4}", "${plan.addressV6}/${plan.prefixV6}"), builder.addresses)
        assertEquals(listOf("0.0.0.0/0", "::/0"), builder.routes)
        assertEquals(listOf(plan.dnsV4, plan.dnsV6), builder.dnsServers)
        assertEquals(TunnelPlan.MTU, builder.mtu)
        assertTrue("disallowed ${builder.disallowed}", app.packageName in builder.disallowed)
        assertTrue(CaptureService.state.running)
        assertTrue("crashes: ${Harness.crashes}", Harness.crashes.isEmpty())
    }

    @Test
    fun ipv4OnlyRoutesOnlyIpv4() {
        Settings(app).ipv6 = false
        start()
        Shots.settle("establish() called") { ShadowVpnBuilder.last != null }
        assertEquals(listOf("0.0.0.0/0"), ShadowVpnBuilder.last!!.routes)
        assertEquals(listOf(TunnelPlan(ipv6 = false).dnsV4), ShadowVpnBuilder.last!!.dnsServers)
    }

    @Test
    fun runsInTheForegroundAsSpecialUseOnItsChannel() {
        ShadowVpnBuilder.establishResult = ShadowVpnBuilder.Establish.TUN
        val service = start().get()
        val shadow = shadowOf(service)
        assertNotNull("no foreground notification", shadow.lastForegroundNotification)
        val info = app.packageManager.getServiceInfo(ComponentName(app, CaptureService::class.java), 0)
        assertEquals(ServiceInfo.FOREGROUND_SERVICE_TYPE_SPECIAL_USE, info.foregroundServiceType)
        assertEquals("android.permission.BIND_VPN_SERVICE", info.permission)
        val channelId = shadow.lastForegroundNotification.channelId
        val channel = app.getSystemService(NotificationManager::class.java).getNotificationChannel(channelId)
        assertNotNull("notification channel $channelId was never created", channel)
        assertEquals(app.getString(R.string.notification_channel), channel.name.toString())
    }

    @Test
    fun establishReturningNullStopsWithTheReason() {
        ShadowVpnBuilder.establishResult = ShadowVpnBuilder.Establish.NULL
        val service = start().get()
        Shots.settle("an error in the service state") { CaptureService.state.error != null }
        assertEquals(app.getString(R.string.error_not_prepared), CaptureService.state.error)
        assertFalse("start" in FakeCore.calls)
        Shots.settle("the service stopped itself") { shadowOf(service).isStoppedBySelf }
    }

    /** establish() throws (permission revoked meanwhile, Always-on by another app): no crash, a reason shown. */
    @Test
    fun establishThrowingStopsWithTheReason() {
        ShadowVpnBuilder.establishResult = ShadowVpnBuilder.Establish.THROW
        val service = start().get()
        Shots.settle("an error in the service state, or a crash") { CaptureService.state.error != null || Harness.crashes.isNotEmpty() }
        assertTrue("establish() throwing crashed the app: ${Harness.crashes}", Harness.crashes.isEmpty())
        assertFalse(CaptureService.state.running)
        assertFalse("start" in FakeCore.calls)
        Shots.settle("the service stopped itself") { shadowOf(service).isStoppedBySelf }
    }

    @Test
    fun coreFailingToStartShowsItsMessage() {
        ShadowVpnBuilder.establishResult = ShadowVpnBuilder.Establish.TUN
        FakeCore.startError = "database is locked"
        start()
        Shots.settle("an error in the service state") { CaptureService.state.error != null }
        assertEquals(app.getString(R.string.error_core_start, "database is locked"), CaptureService.state.error)
        assertFalse(CaptureService.state.running)
    }
}
