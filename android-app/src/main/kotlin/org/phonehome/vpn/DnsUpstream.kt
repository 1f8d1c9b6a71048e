package org.phonehome.vpn

import java.net.Inet4Address
import java.net.InetAddress

/** Where the core forwards DNS: the user's fixed choice, else the network's first resolver. */
object DnsUpstream {
    const val FALLBACK = "9.9.9.9:53"

    fun choose(setting: String, networkResolvers: List<InetAddress>): String {
        val fixed = setting.trim()
        if (fixed.isNotEmpty()) return fixed
        val resolver = networkResolvers.firstOrNull { it is Inet4Address } ?: networkResolvers.firstOrNull()
        return when (resolver) {
            null -> FALLBACK
            is Inet4Address -> "${resolver.hostAddress}:53"
            else -> "[${resolver.hostAddress?.substringBefore('%')}]:53"
        }
    }
}
