package org.phonehome

import android.app.Application
import android.content.res.AssetFileDescriptor
import java.io.FileNotFoundException
import org.phonehome.core.Core
import org.phonehome.settings.Settings

/**
 * Runs first in every process start, whichever component Android starts (a screen reopened
 * after a HyperOS kill, the VpnService under Always-on, the boot receiver). It only records where
 * the history is; the library itself loads on the first core call, off the main thread.
 */
class PhoneHomeApp : Application() {
    override fun onCreate() {
        super.onCreate()
        Core.init(Settings.databasePath(this)) { openGeoAsset() }
    }

    /** The bundled country/ASN file, stored uncompressed so its range in the APK can be read. */
    private fun openGeoAsset(): AssetFileDescriptor? = try {
        assets.openFd(GEO_ASSET)
    } catch (e: FileNotFoundException) {
        null // built with -Pphonehome.noGeo
    }

    companion object {
        const val GEO_ASSET = "phonehome-geo.bin"
    }
}
