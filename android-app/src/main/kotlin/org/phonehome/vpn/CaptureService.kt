package org.phonehome.vpn

import android.content.Context
import android.content.Intent
import android.content.pm.PackageManager
import android.content.pm.ServiceInfo
import android.net.ConnectivityManager
import android.net.LinkProperties
import android.net.Network
import android.net.NetworkCapabilities
import android.net.VpnService
import android.os.Build
import android.os.Handler
import android.os.Looper
import android.os.ParcelFileDescriptor
import android.util.Log
import java.net.InetAddress
import java.util.concurrent.Executors
import org.phonehome.BuildConfig
import org.phonehome.R
import org.phonehome.core.Core
import org.phonehome.core.CoreException
import org.phonehome.proto.StartConfig
import org.phonehome.settings.Settings

/**
 * The VpnService: builds the tunnel, hands its fd to the core, keeps the foreground
 * notification current, follows network changes, and restarts where Android allows it.
 * Started by the app (ACTION_START), by Always-on VPN (the VpnService intent) or at boot.
 */
class CaptureService : VpnService() {
    private val main = Handler(Looper.getMainLooper())
    /** Core start/stop run here: they join threads and touch the disk. */
    private val worker = Executors.newSingleThreadExecutor()
    private lateinit var settings: Settings
    private lateinit var notification: CaptureNotification
    private lateinit var connectivity: ConnectivityManager
    @Volatile private var networkCallback: ConnectivityManager.NetworkCallback? = null
    @Volatile private var upstreamInUse: String? = null

    override fun onCreate() {
        super.onCreate()
        settings = Settings(this)
        notification = CaptureNotification(this)
        connectivity = getSystemService(ConnectivityManager::class.java)
    }

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        if (intent?.action == ACTION_STOP) {
            settings.stoppedByUser = true
            worker.execute { stopCapture() }
            stopForeground(STOP_FOREGROUND_REMOVE)
            stopSelf()
            return START_NOT_STICKY
        }
        if (intent?.action == ACTION_START) {
            settings.stoppedByUser = false
        } else if (settings.stoppedByUser) {
            // Always-on (the VpnService intent) or a sticky restart after the user pressed
            // Stop: honour the Stop, as the setting promises; the app's Start clears it.
            Log.i(TAG, "not starting: stopped by the user")
            stopSelf(startId)
            return START_NOT_STICKY
        }
        goForeground()
        worker.execute { if (!Core.isRunning()) startCapture() }
        return START_STICKY
    }

    private fun goForeground() {
        val running = notification.running(null, canStop = !isLockdown())
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.UPSIDE_DOWN_CAKE) {
            startForeground(CaptureNotification.ID_RUNNING, running, ServiceInfo.FOREGROUND_SERVICE_TYPE_SPECIAL_USE)
        } else {
            startForeground(CaptureNotification.ID_RUNNING, running)
        }
    }

    /** Under Always-on with lockdown the system restarts us at once, so Stop would only flicker. */
    private fun isLockdown(): Boolean =
        Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q && isAlwaysOn && isLockdownEnabled

    /**
     * The whole start sequence is guarded: establish() throws (IllegalStateException,
     * IllegalArgumentException, SecurityException) or returns null, the library may not load,
     * the core may refuse the config. Each ends in [fail] (Live and the notification say why),
     * and the tun fd is closed on every path that does not hand it to the core, or the phone
     * would keep a tunnel with nobody reading it: no network until the VPN is revoked.
     */
    private fun startCapture() {
        try {
            // Before establish(): a library that cannot load must not leave a tunnel behind.
            Core.load()
        } catch (e: Throwable) {
            fail(getString(R.string.error_core_start, describe(e)))
            return
        }
        var tun: ParcelFileDescriptor? = null
        try {
            val plan = TunnelPlan(settings.ipv6)
            val network = connectivity.activeNetwork
            tun = buildTunnel(plan, network).establish()
            if (tun == null) {
                fail(getString(R.string.error_not_prepared))
                return
            }
            val resolvers: List<InetAddress> = network?.let { connectivity.getLinkProperties(it)?.dnsServers }.orEmpty()
            val upstream = DnsUpstream.choose(settings.dnsUpstream, resolvers, settings.fallbackDns)
            val config = startConfig(plan, upstream)
            val fd = tun.detachFd()
            tun = null // the core owns the descriptor from here on, even when start fails
            Core.start(fd, settings.databasePath, config, AndroidOwnerCallback(this))
            upstreamInUse = upstream
            state = State(
                running = true,
                privateDnsStrict = false,
                error = null,
                dnsUpstream = upstream,
                dnsFallback = DnsUpstream.isFallback(settings.dnsUpstream, resolvers),
            )
            main.post { watchNetwork(); refreshNotification() }
        } catch (e: CoreException) {
            fail(getString(R.string.error_core_start, describe(e)))
        } catch (e: Throwable) {
            fail(getString(R.string.error_tunnel, describe(e)))
        } finally {
            try {
                tun?.close()
            } catch (e: java.io.IOException) {
                Log.w(TAG, "closing the unused tunnel: ${e.message}")
            }
        }
    }

    private fun buildTunnel(plan: TunnelPlan, network: Network?): Builder {
        val builder = Builder()
            .setSession(getString(R.string.app_name))
            .setMtu(plan.mtu)
            .addAddress(plan.addressV4, plan.prefixV4)
            .addDnsServer(plan.dnsV4)
            .setBlocking(false)
            .setConfigureIntent(
                android.app.PendingIntent.getActivity(
                    this, 0, Intent(this, org.phonehome.ui.LiveActivity::class.java),
                    android.app.PendingIntent.FLAG_IMMUTABLE,
                ),
            )
        if (plan.ipv6) builder.addAddress(plan.addressV6, plan.prefixV6).addDnsServer(plan.dnsV6)
        for ((address, prefix) in plan.routes) builder.addRoute(address, prefix)
        // The core's own sockets must not loop back into the tunnel.
        builder.addDisallowedApplication(packageName)
        for (excluded in settings.excludedApps) {
            try {
                builder.addDisallowedApplication(excluded)
            } catch (e: PackageManager.NameNotFoundException) {
                Log.i(TAG, "excluded app $excluded is not installed")
            }
        }
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) builder.setMetered(false)
        if (network != null) builder.setUnderlyingNetworks(arrayOf(network))
        return builder
    }

    private fun startConfig(plan: TunnelPlan, upstream: String): StartConfig = StartConfig.newBuilder()
        .setDnsV4(plan.dnsV4)
        .setDnsV6(if (plan.ipv6) plan.dnsV6 else "")
        .setDnsUpstream(upstream)
        .setMtu(plan.mtu)
        .setDevice("${Build.MANUFACTURER} ${Build.MODEL} (${Build.DEVICE})")
        .setOsVersion("Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT}) ${Build.DISPLAY}")
        .setAppVersion(BuildConfig.VERSION_NAME)
        .setRetentionDays(settings.retentionDays)
        // For the cleartext identifier scan. INCREMENTAL is the MIUI/HyperOS version on
        // Xiaomi phones ("V14.0.3.0.TKHEUXM", "OS1.0.5.0.UMCEUXM"), read without hidden APIs.
        .setModel(Build.MODEL.orEmpty())
        .setManufacturer(Build.MANUFACTURER.orEmpty())
        .setBuildIncremental(Build.VERSION.INCREMENTAL.orEmpty())
        .addAllOwnIps(plan.ownAddresses)
        .build()

    private fun describe(e: Throwable): String = e.message ?: e.javaClass.simpleName

    private fun stopCapture() {
        main.removeCallbacksAndMessages(null)
        networkCallback?.let { connectivity.unregisterNetworkCallback(it) }
        networkCallback = null
        upstreamInUse = null
        if (Core.isRunning()) {
            try {
                Core.stop()
            } catch (e: CoreException) {
                Log.w(TAG, "stop: ${e.message}")
                state = state.copy(error = e.message)
            }
        }
        state = state.copy(running = false)
    }

    private fun fail(reason: String) {
        Log.w(TAG, reason)
        state = State(running = false, privateDnsStrict = false, error = reason, dnsUpstream = null, dnsFallback = false)
        notification.stopped(reason)
        main.post {
            stopForeground(STOP_FOREGROUND_REMOVE)
            stopSelf()
        }
    }

    private fun refreshNotification() {
        if (!Core.isRunning()) return
        try {
            notification.update(notification.running(Core.snapshot(), canStop = !isLockdown()))
        } catch (e: Exception) {
            Log.w(TAG, "snapshot: ${e.message}")
        }
        main.postDelayed({ refreshNotification() }, NOTIFICATION_PERIOD_MS)
    }

    /**
     * Follows the default network (ours is the real one: the app is outside its own tunnel).
     * The system learns which network carries the tunnel (for metering and the status bar);
     * when the network's resolver changes (Wi-Fi <-> mobile), the core is told in place: the
     * session, its flows and the experiment carry on, and the change enters the timeline.
     */
    private fun watchNetwork() {
        val callback = object : ConnectivityManager.NetworkCallback() {
            override fun onAvailable(network: Network) {
                setUnderlyingNetworks(arrayOf(network))
            }

            override fun onLost(network: Network) {
                setUnderlyingNetworks(null)
            }

            override fun onLinkPropertiesChanged(network: Network, properties: LinkProperties) {
                val strict = Build.VERSION.SDK_INT >= Build.VERSION_CODES.P && properties.privateDnsServerName != null
                state = state.copy(privateDnsStrict = strict)
                val inUse = upstreamInUse ?: return
                val resolvers = properties.dnsServers
                val wanted = DnsUpstream.choose(settings.dnsUpstream, resolvers, settings.fallbackDns)
                if (wanted == inUse) return
                val fallback = DnsUpstream.isFallback(settings.dnsUpstream, resolvers)
                val name = networkName(network)
                worker.execute { changeNetwork(wanted, name, fallback) }
            }
        }
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) {
            connectivity.registerDefaultNetworkCallback(callback, main)
        } else {
            connectivity.registerDefaultNetworkCallback(callback) // runs on a system thread
        }
        networkCallback = callback
    }

    private fun changeNetwork(upstream: String, network: String, fallback: Boolean) {
        if (!Core.isRunning()) return
        try {
            Core.changeNetwork(upstream, network)
            Log.i(TAG, "network $network: DNS upstream $upstreamInUse -> $upstream, same session")
            upstreamInUse = upstream
            state = state.copy(dnsUpstream = upstream, dnsFallback = fallback)
        } catch (e: Exception) {
            Log.w(TAG, "network change: ${e.message}")
            state = state.copy(error = getString(R.string.error_network_change, describe(e)))
        }
    }

    /** "wifi", "cellular", "ethernet" or "" for the timeline entry. */
    private fun networkName(network: Network): String {
        val capabilities = connectivity.getNetworkCapabilities(network) ?: return ""
        return when {
            capabilities.hasTransport(NetworkCapabilities.TRANSPORT_WIFI) -> "wifi"
            capabilities.hasTransport(NetworkCapabilities.TRANSPORT_CELLULAR) -> "cellular"
            capabilities.hasTransport(NetworkCapabilities.TRANSPORT_ETHERNET) -> "ethernet"
            else -> ""
        }
    }

    override fun onRevoke() {
        // Another VPN took over, or the user revoked the permission in Settings.
        worker.execute {
            stopCapture()
            if (prepare(this) == null && !settings.stoppedByUser) {
                startCapture()
            } else {
                fail(getString(R.string.error_revoked))
            }
        }
    }

    override fun onDestroy() {
        worker.execute { stopCapture() }
        worker.shutdown()
        super.onDestroy()
    }

    /** What the screens show about the service. */
    data class State(
        val running: Boolean,
        val privateDnsStrict: Boolean,
        val error: String?,
        /** Where the core sends DNS now; [dnsFallback] when the network named no resolver. */
        val dnsUpstream: String? = null,
        val dnsFallback: Boolean = false,
    )

    companion object {
        const val ACTION_START = "org.phonehome.action.START"
        const val ACTION_STOP = "org.phonehome.action.STOP"
        private const val TAG = "PhoneHome"
        private const val NOTIFICATION_PERIOD_MS = 2_000L

        @Volatile
        var state = State(running = false, privateDnsStrict = false, error = null)
            private set

        fun start(context: Context) {
            val intent = Intent(context, CaptureService::class.java).setAction(ACTION_START)
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) {
                context.startForegroundService(intent)
            } else {
                context.startService(intent)
            }
        }

        fun stop(context: Context) {
            context.startService(Intent(context, CaptureService::class.java).setAction(ACTION_STOP))
        }
    }
}
