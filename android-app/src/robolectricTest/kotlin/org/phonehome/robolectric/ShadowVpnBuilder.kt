package org.phonehome.robolectric

import android.net.VpnService
import android.os.ParcelFileDescriptor
import org.robolectric.annotation.Implementation
import org.robolectric.annotation.Implements
import org.robolectric.annotation.RealObject

/**
 * VpnService.Builder on the JVM: the real one needs InetAddress.parseNumericAddress (absent from
 * the host JDK) and a package manager service. This one records the configuration the service
 * asks for, and establish() answers as [establishResult] says.
 */
@Implements(VpnService.Builder::class)
class ShadowVpnBuilder {
    @field:RealObject
    private var realBuilder: VpnService.Builder? = null
    private val real: VpnService.Builder
        get() = realBuilder ?: throw IllegalStateException("Robolectric injected no real Builder")

    val addresses = mutableListOf<String>()
    val routes = mutableListOf<String>()
    val dnsServers = mutableListOf<String>()
    val disallowed = mutableListOf<String>()

    /**
     * Read-only outside: a public `setMtu(int)` setter would be a second shadow candidate for
     * Builder.setMtu (Robolectric takes any public method of the shadow with a matching name
     * and parameters, @Implementation or not, and picks the first one reflection lists, an
     * order that changes with what the JVM loaded before). When the void setter won, setMtu
     * returned null to the service. ShadowSignaturesTest keeps such clashes out.
     */
    var mtu = 0
        private set

    @Implementation
    fun addAddress(address: String, prefixLength: Int): VpnService.Builder {
        addresses += "$address/$prefixLength"
        return real
    }

    @Implementation
    fun addRoute(address: String, prefixLength: Int): VpnService.Builder {
        routes += "$address/$prefixLength"
        return real
    }

    @Implementation
    fun addDnsServer(address: String): VpnService.Builder {
        dnsServers += address
        return real
    }

    @Implementation
    fun setMtu(value: Int): VpnService.Builder {
        mtu = value
        return real
    }

    @Implementation
    fun addDisallowedApplication(packageName: String): VpnService.Builder {
        disallowed += packageName
        return real
    }

    @Implementation
    fun establish(): ParcelFileDescriptor? {
        last = this
        return when (establishResult) {
            Establish.NULL -> null
            Establish.THROW -> throw IllegalStateException("establish: the VPN permission was revoked")
            Establish.TUN -> ParcelFileDescriptor.open(java.io.File("/dev/null"), ParcelFileDescriptor.MODE_READ_WRITE)
        }
    }

    enum class Establish { NULL, THROW, TUN }

    companion object {
        @Volatile var last: ShadowVpnBuilder? = null
        @Volatile var establishResult = Establish.NULL

        fun reset() {
            last = null
            establishResult = Establish.NULL
        }
    }
}
