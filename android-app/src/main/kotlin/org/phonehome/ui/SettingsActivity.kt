package org.phonehome.ui

import android.app.Activity
import android.app.AlertDialog
import android.content.pm.ApplicationInfo
import android.content.pm.PackageManager
import android.os.Build
import android.os.Bundle
import android.widget.Button
import android.widget.EditText
import android.widget.Switch
import android.widget.TextView
import org.phonehome.R
import org.phonehome.settings.Settings

/** IPv6, DNS upstream, retention, start at boot, excluded apps. Applied at the next start. */
class SettingsActivity : Activity() {
    private lateinit var settings: Settings
    private lateinit var ipv6: Switch
    private lateinit var dns: EditText
    private lateinit var fallbackDns: EditText
    private lateinit var retention: EditText
    private lateinit var boot: Switch
    private lateinit var excludedSummary: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_settings)
        EdgeToEdge.fit(this)
        settings = Settings(this)
        ipv6 = findViewById(R.id.setting_ipv6)
        dns = findViewById(R.id.setting_dns)
        fallbackDns = findViewById(R.id.setting_fallback_dns)
        retention = findViewById(R.id.setting_retention)
        boot = findViewById(R.id.setting_boot)
        excludedSummary = findViewById(R.id.setting_excluded_summary)
        ipv6.isChecked = settings.ipv6
        dns.setText(settings.dnsUpstream)
        fallbackDns.setText(settings.fallbackDns)
        retention.setText(settings.retentionDays.toString())
        boot.isChecked = settings.startAtBoot
        showExcluded()
        findViewById<Button>(R.id.setting_excluded).setOnClickListener { chooseExcluded() }
    }

    override fun onPause() {
        settings.ipv6 = ipv6.isChecked
        settings.dnsUpstream = dns.text.toString()
        settings.fallbackDns = fallbackDns.text.toString()
        retention.text.toString().toIntOrNull()?.let { settings.retentionDays = it }
        settings.startAtBoot = boot.isChecked
        super.onPause()
    }

    private fun showExcluded() {
        val excluded = settings.excludedApps
        excludedSummary.text = if (excluded.isEmpty()) getString(R.string.setting_excluded_none) else excluded.sorted().joinToString("\n")
    }

    /** Labels load off the main thread: with hundreds of packages loadLabel takes seconds (ANR). */
    private fun chooseExcluded() {
        val button = findViewById<Button>(R.id.setting_excluded)
        button.isEnabled = false
        Background.run({ labelledApps() }) { result ->
            button.isEnabled = true
            if (isFinishing || isDestroyed) return@run
            result.onSuccess { showChooser(it) }.onFailure {
                excludedSummary.text = getString(R.string.error_settings_apps, it.message)
            }
        }
    }

    private fun showChooser(labelled: List<Pair<ApplicationInfo, String>>) {
        val apps = labelled.map { it.first }
        val labels = labelled.map { "${it.second}\n${it.first.packageName}" }.toTypedArray()
        val chosen = settings.excludedApps.toMutableSet()
        val checked = apps.map { it.packageName in chosen }.toBooleanArray()
        AlertDialog.Builder(this)
            .setTitle(R.string.setting_excluded)
            .setMultiChoiceItems(labels, checked) { _, which, isChecked ->
                if (isChecked) chosen.add(apps[which].packageName) else chosen.remove(apps[which].packageName)
            }
            .setPositiveButton(android.R.string.ok) { _, _ ->
                settings.excludedApps = chosen
                showExcluded()
            }
            .setNegativeButton(android.R.string.cancel, null)
            .show()
    }

    private fun labelledApps(): List<Pair<ApplicationInfo, String>> =
        installedApps()
            .filter { it.packageName != packageName }
            .map { it to it.loadLabel(packageManager).toString() }
            .sortedBy { it.second.lowercase() }

    private fun installedApps(): List<ApplicationInfo> {
        val all = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) {
            packageManager.getInstalledApplications(PackageManager.ApplicationInfoFlags.of(0))
        } else {
            @Suppress("DEPRECATION")
            packageManager.getInstalledApplications(0)
        }
        return all
    }
}
