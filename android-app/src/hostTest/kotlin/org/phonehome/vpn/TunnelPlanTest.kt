package org.phonehome.vpn

import java.net.InetAddress
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The service's pure choices: tunnel addresses and routes, and the DNS upstream. */
class TunnelPlanTest {
    private fun ip(text: String): InetAddress = InetAddress.getByName(text)

    @Test
    fun ipv6RoutesOnlyWhenSwitchedOn() {
        assertEquals(listOf("0.0.0.0" to 0), TunnelPlan(ipv6 = false).routes)
        assertEquals(listOf("0.0.0.0" to 0, "::" to 0), TunnelPlan(ipv6 = true).routes)
    }

    @Test
    fun ownAddressesAreTheInterfaceAddressesOfEachFamilyInUse() {
        assertEquals(listOf("10.215.173.1"), TunnelPlan(ipv6 = false).ownAddresses)
        assertEquals(listOf("10.215.173.1", "fd00:7068:6f6d:6500::1"), TunnelPlan(ipv6 = true).ownAddresses)
    }

    @Test
    fun theCoreDnsAddressIsInsideTheTunnelSubnet() {
        val plan = TunnelPlan(ipv6 = true)
        val address = ip(plan.addressV4).address
        val dns = ip(plan.dnsV4).address
        val mask = -1 shl (32 - plan.prefixV4)
        fun int(b: ByteArray) = b.fold(0) { acc, x -> (acc shl 8) or (x.toInt() and 0xff) }
        assertEquals(int(address) and mask, int(dns) and mask)
        assertTrue(plan.dnsV4 != plan.addressV4)
        assertTrue(ip(plan.dnsV6).hostAddress.startsWith("fd00:7068:6f6d:6500:"))
        assertTrue("the engine needs at least the IPv6 minimum MTU", plan.mtu in 1280..65535)
    }

    @Test
    fun upstreamPrefersTheUsersChoiceThenTheNetworksIpv4Resolver() {
        val fallback = "198.51.100.9:53"
        assertEquals("9.9.9.9", DnsUpstream.choose(" 9.9.9.9 ", listOf(ip("192.0.2.53")), fallback))
        assertEquals("192.0.2.53:53", DnsUpstream.choose("", listOf(ip("2001:db8::53"), ip("192.0.2.53")), fallback))
        assertEquals("[2001:db8:0:0:0:0:0:53]:53", DnsUpstream.choose("", listOf(ip("2001:db8::53")), fallback))
        // No resolver from the network: the fallback the user set, and the screens can say so.
        assertEquals(fallback, DnsUpstream.choose("", emptyList(), fallback))
        assertEquals(true, DnsUpstream.isFallback("", emptyList()))
        assertEquals(false, DnsUpstream.isFallback("", listOf(ip("192.0.2.53"))))
    }
}
