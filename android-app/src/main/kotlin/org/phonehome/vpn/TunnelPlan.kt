package org.phonehome.vpn

/**
 * The tunnel's addresses, routes and MTU, chosen once here so the VpnService.Builder and the
 * core's start config agree. The core answers DNS on [dnsV4]/[dnsV6]: the phone's resolver is
 * pointed there and every query crosses the core, which names flows from the answers.
 */
data class TunnelPlan(
    val ipv6: Boolean,
    val mtu: Int = MTU,
) {
    val addressV4 = "10.215.173.1"
    val prefixV4 = 30
    val dnsV4 = "10.215.173.2"
    val addressV6 = "fd00:7068:6f6d:6500::1"
    val prefixV6 = 64
    val dnsV6 = "fd00:7068:6f6d:6500::2"

    /** The phone's own addresses inside the tunnel: what apps see as their local IP. */
    val ownAddresses: List<String>
        get() = if (ipv6) listOf(addressV4, addressV6) else listOf(addressV4)

    /** Every IPv4 destination; IPv6 too when switched on (an omitted family is blocked by Android). */
    val routes: List<Pair<String, Int>>
        get() = if (ipv6) listOf("0.0.0.0" to 0, "::" to 0) else listOf("0.0.0.0" to 0)

    companion object {
        /**
         * Fewer, larger packets cross the tun: each read/write and each smoltcp poll has a fixed
         * cost, so a jumbo MTU cuts CPU per GB (PCAPdroid uses 10000 for the same reason). The
         * core relays over normal sockets, so the real network's MTU is unaffected.
         */
        const val MTU = 9000
    }
}
