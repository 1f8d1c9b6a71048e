package org.phonehome.vpn

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.net.VpnService
import android.util.Log
import org.phonehome.settings.Settings

/**
 * Starts the capture after boot when the user asked for it and the VPN permission is still
 * granted (prepare() returns null). MIUI/HyperOS deliver BOOT_COMPLETED only to apps allowed to
 * autostart: the MIUI screen explains how.
 */
class BootReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        if (intent.action != Intent.ACTION_BOOT_COMPLETED && intent.action != ACTION_QUICKBOOT) return
        val settings = Settings(context)
        if (!settings.startAtBoot || settings.stoppedByUser) return
        if (VpnService.prepare(context) != null) {
            Log.i("PhoneHome", "boot: VPN permission not granted, not starting")
            return
        }
        CaptureService.start(context)
    }

    private companion object {
        /** Sent instead of BOOT_COMPLETED by some vendor builds, Xiaomi's among them. */
        const val ACTION_QUICKBOOT = "android.intent.action.QUICKBOOT_POWERON"
    }
}
