package org.phonehome.vpn

import java.net.Inet4Address
import java.net.InetAddress

/**
 * Where the core forwards DNS: the user's fixed choice, else the network's first resolver, else
 * [fallback] (Settings, 9.9.9.9 unless changed).
 */
object DnsUpstream {
    fun choose(setting: String, networkResolvers: List<InetAddress>, fallback: String): String {
        val fixed = setting.trim()
        if (fixed.isNotEmpty()) return fixed
        val resolver = networkResolvers.firstOrNull { it is Inet4Address } ?: networkResolvers.firstOrNull()
        return when (resolver) {
            null -> fallback
            is Inet4Address -> "${resolver.hostAddress}:53"
            else -> "[${resolver.hostAddress?.substringBefore('%')}]:53"
        }
    }

    /** True when [choose] would give the fallback: no fixed choice and no resolver from the network. */
    fun isFallback(setting: String, networkResolvers: List<InetAddress>): Boolean =
        setting.isBlank() && networkResolvers.isEmpty()
}
