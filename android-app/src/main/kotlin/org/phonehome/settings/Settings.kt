package org.phonehome.settings

import android.content.Context
import android.content.SharedPreferences
import java.io.File

/** The user's choices, in one SharedPreferences file. Changes apply at the next capture start. */
class Settings(context: Context) {
    private val prefs: SharedPreferences = context.getSharedPreferences("settings", Context.MODE_PRIVATE)
    private val filesDir: File = context.filesDir

    var ipv6: Boolean
        get() = prefs.getBoolean(KEY_IPV6, true)
        set(value) = prefs.edit().putBoolean(KEY_IPV6, value).apply()

    /** "ip" or "ip:port"; empty = the network's own resolver. */
    var dnsUpstream: String
        get() = prefs.getString(KEY_DNS, "") ?: ""
        set(value) = prefs.edit().putString(KEY_DNS, value.trim()).apply()

    /** Where DNS goes when the network names no resolver ("ip" or "ip:port"). */
    var fallbackDns: String
        get() = prefs.getString(KEY_FALLBACK_DNS, null)?.takeIf { it.isNotBlank() } ?: DEFAULT_FALLBACK_DNS
        set(value) = prefs.edit().putString(KEY_FALLBACK_DNS, value.trim()).apply()

    /** Days of history kept; 0 keeps everything. */
    var retentionDays: Int
        get() = prefs.getInt(KEY_RETENTION, 30)
        set(value) = prefs.edit().putInt(KEY_RETENTION, value.coerceIn(0, 3650)).apply()

    var startAtBoot: Boolean
        get() = prefs.getBoolean(KEY_BOOT, false)
        set(value) = prefs.edit().putBoolean(KEY_BOOT, value).apply()

    /** Packages left outside the tunnel (their traffic is neither seen nor recorded). */
    var excludedApps: Set<String>
        get() = prefs.getStringSet(KEY_EXCLUDED, emptySet())?.toSet() ?: emptySet()
        set(value) = prefs.edit().putStringSet(KEY_EXCLUDED, value.toSet()).apply()

    /** The user pressed Stop: Always-on and boot must not start the capture again behind their back. */
    var stoppedByUser: Boolean
        get() = prefs.getBoolean(KEY_STOPPED, false)
        set(value) = prefs.edit().putBoolean(KEY_STOPPED, value).apply()

    /** The SQLite database the core writes (the history of every session). */
    val databasePath: String
        get() = File(filesDir, DATABASE).absolutePath

    companion object {
        private const val DATABASE = "phonehome.db"

        /** [databasePath] without reading the preferences (for the Application's start). */
        fun databasePath(context: Context): String = File(context.filesDir, DATABASE).absolutePath

        private const val KEY_IPV6 = "ipv6"
        private const val KEY_DNS = "dns_upstream"
        private const val KEY_FALLBACK_DNS = "fallback_dns"
        const val DEFAULT_FALLBACK_DNS = "9.9.9.9:53"
        private const val KEY_RETENTION = "retention_days"
        private const val KEY_BOOT = "start_at_boot"
        private const val KEY_EXCLUDED = "excluded_apps"
        private const val KEY_STOPPED = "stopped_by_user"
    }
}
