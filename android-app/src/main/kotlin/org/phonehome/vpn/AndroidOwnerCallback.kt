package org.phonehome.vpn

import android.content.Context
import android.content.pm.ApplicationInfo
import android.content.pm.PackageManager
import android.net.ConnectivityManager
import android.os.Build
import java.net.InetAddress
import java.net.InetSocketAddress
import org.phonehome.core.CoreCallback
import org.phonehome.proto.AppIdentity

/**
 * Answers the core's owner questions with the platform: `getConnectionOwnerUid` (Android 10+,
 * allowed for the active VPN app) and the PackageManager for names. Runs on the core's
 * owner-lookup thread.
 */
class AndroidOwnerCallback(context: Context) : CoreCallback {
    private val connectivity = context.getSystemService(ConnectivityManager::class.java)
    private val packages: PackageManager = context.packageManager

    override fun ownerUid(protocol: Int, localAddress: ByteArray, localPort: Int, remoteAddress: ByteArray, remotePort: Int): Int {
        if (Build.VERSION.SDK_INT < Build.VERSION_CODES.Q) return CoreCallback.OWNER_UNSUPPORTED
        return try {
            val local = InetSocketAddress(InetAddress.getByAddress(localAddress), localPort)
            val remote = InetSocketAddress(InetAddress.getByAddress(remoteAddress), remotePort)
            val uid = connectivity.getConnectionOwnerUid(protocol, local, remote)
            if (uid >= 0) uid else CoreCallback.OWNER_UNKNOWN
        } catch (e: SecurityException) {
            CoreCallback.OWNER_UNKNOWN // no longer the active VPN
        } catch (e: IllegalArgumentException) {
            CoreCallback.OWNER_UNKNOWN
        }
    }

    override fun appIdentity(uid: Int): ByteArray? {
        val names = packages.getPackagesForUid(uid)?.sorted().orEmpty()
        val identity = AppIdentity.newBuilder().setUid(uid).addAllPackages(names)
        val first = names.firstOrNull()
        if (first == null) {
            // System UIDs without a package (1051 dns, 1073 network stack, 0 root).
            identity.label = packages.getNameForUid(uid) ?: return null
            identity.system = uid < FIRST_APPLICATION_UID
            return identity.build().toByteArray()
        }
        val info = applicationInfo(first)
        identity.label = info?.loadLabel(packages)?.toString() ?: first
        identity.system = uid < FIRST_APPLICATION_UID ||
            (info != null && info.flags and (ApplicationInfo.FLAG_SYSTEM or ApplicationInfo.FLAG_UPDATED_SYSTEM_APP) != 0)
        return identity.build().toByteArray()
    }

    private fun applicationInfo(packageName: String): ApplicationInfo? = try {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) {
            packages.getApplicationInfo(packageName, PackageManager.ApplicationInfoFlags.of(0))
        } else {
            @Suppress("DEPRECATION")
            packages.getApplicationInfo(packageName, 0)
        }
    } catch (e: PackageManager.NameNotFoundException) {
        null
    }

    private companion object {
        const val FIRST_APPLICATION_UID = 10000
    }
}
