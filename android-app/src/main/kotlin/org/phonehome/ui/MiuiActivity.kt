package org.phonehome.ui

import android.app.Activity
import android.content.ComponentName
import android.content.Intent
import android.net.Uri
import android.os.Bundle
import android.provider.Settings
import android.widget.Button
import org.phonehome.R

/**
 * MIUI / HyperOS keep background apps on a short leash: without Autostart the capture does not
 * come back after a reboot or a kill, and battery saver "Smart" stops it. This page explains it
 * and opens the right system screens where this build has them (a button whose screen does not
 * exist is disabled).
 */
class MiuiActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_miui)
        bind(R.id.miui_autostart, autostart())
        bind(R.id.miui_battery, batteryNoRestrictions(), appDetails())
        bind(R.id.miui_battery_optimization, Intent(Settings.ACTION_IGNORE_BATTERY_OPTIMIZATION_SETTINGS))
        bind(R.id.miui_always_on, Intent(Settings.ACTION_VPN_SETTINGS))
        bind(R.id.miui_app_details, appDetails())
    }

    /** Enables [id] with the first intent that resolves on this phone. */
    private fun bind(id: Int, vararg candidates: Intent) {
        val button = findViewById<Button>(id)
        val intent = candidates.firstOrNull { it.resolveActivity(packageManager) != null }
        button.isEnabled = intent != null
        if (intent != null) {
            button.setOnClickListener {
                try {
                    startActivity(intent)
                } catch (e: SecurityException) {
                    // Some MIUI builds do not export the screen; the app page is always reachable.
                    startActivity(appDetails())
                }
            }
        }
    }

    private fun autostart() = Intent().setComponent(
        ComponentName("com.miui.securitycenter", "com.miui.permcenter.autostart.AutoStartManagementActivity"),
    )

    private fun batteryNoRestrictions() = Intent()
        .setComponent(ComponentName("com.miui.powerkeeper", "com.miui.powerkeeper.ui.HiddenAppsConfigActivity"))
        .putExtra("package_name", packageName)
        .putExtra("package_label", getString(R.string.app_name))

    private fun appDetails() =
        Intent(Settings.ACTION_APPLICATION_DETAILS_SETTINGS, Uri.fromParts("package", packageName, null))
}
