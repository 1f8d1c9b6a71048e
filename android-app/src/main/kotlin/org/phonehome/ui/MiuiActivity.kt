package org.phonehome.ui

import android.app.Activity
import android.content.ActivityNotFoundException
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
        EdgeToEdge.fit(this)
        bind(R.id.miui_autostart, autostart(), autostartAction(), permissionEditor(), appDetails())
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
                    openAppDetails()
                } catch (e: ActivityNotFoundException) {
                    // Resolved a moment ago, gone now (a security-center update): same fallback.
                    openAppDetails()
                }
            }
        }
    }

    private fun autostart() = Intent().setComponent(
        ComponentName("com.miui.securitycenter", "com.miui.permcenter.autostart.AutoStartManagementActivity"),
    )

    /** The action some MIUI/HyperOS builds answer instead of the component above. */
    private fun autostartAction() = Intent("miui.intent.action.OP_AUTO_START").addCategory(Intent.CATEGORY_DEFAULT)

    /** The per-app permission editor, which holds the Autostart switch on other builds. */
    private fun permissionEditor() = Intent("miui.intent.action.APP_PERM_EDITOR")
        .setClassName("com.miui.securitycenter", "com.miui.permcenter.permissions.PermissionsEditorActivity")
        .putExtra("extra_pkgname", packageName)

    private fun openAppDetails() {
        try {
            startActivity(appDetails())
        } catch (e: ActivityNotFoundException) {
            findViewById<Button>(R.id.miui_app_details).isEnabled = false
        }
    }

    private fun batteryNoRestrictions() = Intent()
        .setComponent(ComponentName("com.miui.powerkeeper", "com.miui.powerkeeper.ui.HiddenAppsConfigActivity"))
        .putExtra("package_name", packageName)
        .putExtra("package_label", getString(R.string.app_name))

    private fun appDetails() =
        Intent(Settings.ACTION_APPLICATION_DETAILS_SETTINGS, Uri.fromParts("package", packageName, null))
}
