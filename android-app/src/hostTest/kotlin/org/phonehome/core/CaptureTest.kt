package org.phonehome.core

import java.io.File
import java.net.InetAddress
import java.nio.file.Files
import java.util.concurrent.ConcurrentLinkedQueue
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.BeforeClass
import org.junit.Test
import org.phonehome.proto.AppIdentity
import org.phonehome.proto.ExportFormat
import org.phonehome.proto.Proto
import org.phonehome.proto.Snapshot
import org.phonehome.proto.StartConfig

/**
 * A capture as the app runs one, on the host build of the core: a real TUN device (standing in
 * for VpnService's fd) that routes the namespace's traffic, a client process with its own UID,
 * a server in another namespace reached by the core's own sockets. Kotlin answers the owner
 * callback (as AndroidOwnerCallback does with getConnectionOwnerUid) by reading /proc/net/tcp.
 * scripts/check-android.sh builds the namespaces and runs this inside the "phone" one.
 */
class CaptureTest {
    companion object {
        const val CLIENT_UID = 4242
        const val SERVER = "198.19.0.1"
        const val PORT = 8080
        const val BLOB_BYTES = 65536L
        /** The "phone's" address on its TUN (scripts/check-android.sh). */
        const val PHONE_IP = "198.18.0.1"

        @JvmStatic
        @BeforeClass
        fun load() {
            assumeTrue("needs -Dphonehome.tun (run scripts/check-android.sh as root)", !System.getProperty("phonehome.tun").isNullOrEmpty())
            HostLibrary.load()
        }
    }

    private val tunName = System.getProperty("phonehome.tun")

    /** The Kotlin owner lookup; records every question so the test can check what the core asked. */
    private class ProcNetCallback(private val answerUnsupported: Boolean) : CoreCallback {
        val questions = ConcurrentLinkedQueue<String>()
        val threads = ConcurrentLinkedQueue<String>()

        /** Holds answers back (a slow Binder call) until the test opens it; open by default. */
        @Volatile
        var answerGate = CountDownLatch(0)

        override fun ownerUid(protocol: Int, localAddress: ByteArray, localPort: Int, remoteAddress: ByteArray, remotePort: Int): Int {
            val local = InetAddress.getByAddress(localAddress).hostAddress
            val remote = InetAddress.getByAddress(remoteAddress).hostAddress
            questions.add("$protocol $local:$localPort -> $remote:$remotePort")
            threads.add(Thread.currentThread().name)
            if (answerUnsupported) return CoreCallback.OWNER_UNSUPPORTED
            if (protocol != 6) return CoreCallback.OWNER_UNKNOWN
            val uid = findTcpOwner(localAddress, localPort, remoteAddress, remotePort)
            questions.add("answer $uid")
            answerGate.await(20, TimeUnit.SECONDS)
            return uid ?: CoreCallback.OWNER_UNKNOWN
        }

        override fun appIdentity(uid: Int): ByteArray? {
            if (uid != CLIENT_UID) return null
            return AppIdentity.newBuilder()
                .setUid(uid)
                .addPackages("org.example.client")
                .addPackages("org.example.shared")
                .setLabel("Test client")
                .build()
                .toByteArray()
        }

        /** /proc/net/tcp: hex IPv4 in host (little-endian) order, hex port, uid in column 8. */
        private fun findTcpOwner(local: ByteArray, localPort: Int, remote: ByteArray, remotePort: Int): Int? {
            fun hex(address: ByteArray, port: Int) =
                address.reversedArray().joinToString("") { "%02X".format(it) } + ":" + "%04X".format(port)
            val want = hex(local, localPort) to hex(remote, remotePort)
            return File("/proc/net/tcp").readLines().drop(1)
                .map { it.trim().split(Regex("\\s+")) }
                .firstOrNull { it.size > 7 && it[1] == want.first && it[2] == want.second }
                ?.get(7)?.toInt()
        }
    }

    private fun config(): StartConfig = StartConfig.newBuilder()
        .setDnsV4("198.18.0.2")
        .setDnsUpstream("198.18.255.2:53")
        .setMtu(9000)
        .setDevice("host test")
        .setOutboundMark(0x50)
        // The phone's facts as CaptureService fills them from android.os.Build and the tunnel.
        .setModel("23013RK75C")
        .setManufacturer("Xiaomi")
        .setBuildIncremental("OS1.0.7.0.UMCEUXM")
        .addOwnIps(PHONE_IP)
        .build()

    /**
     * An HTTP GET as UID 4242 through the tunnel, with a Host header naming a Xiaomi telemetry
     * host. The client waits 0.5 s between connect and request, so its socket is certainly in
     * the kernel's tables when the owner question comes (as an app's keep-alive socket is).
     * The query string carries the phone's own address, as a tracker reporting it would.
     * Returns the body length.
     */
    private fun fetch(): Long {
        val client = """
            import socket, time
            s = socket.create_connection(("$SERVER", $PORT), timeout=20)
            time.sleep(0.5)
            s.sendall(b"GET /blob?client=$PHONE_IP HTTP/1.1\r\nHost: tracking.intl.miui.com\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            print(len(data.split(b"\r\n\r\n", 1)[1]))
        """.trimIndent()
        val process = ProcessBuilder(
            "setpriv", "--reuid=$CLIENT_UID", "--regid=$CLIENT_UID", "--clear-groups", "/usr/bin/python3", "-c", client,
        ).redirectErrorStream(true).start()
        assertTrue("the client did not finish", process.waitFor(30, TimeUnit.SECONDS))
        val out = process.inputStream.bufferedReader().readText().trim()
        assertEquals("client failed: $out", 0, process.exitValue())
        return out.toLong()
    }

    /** Polls snapshots (as the Live screen does) until [done] holds; bounded. */
    private fun awaitSnapshot(what: String, context: () -> String = { "" }, done: (Snapshot) -> Boolean): Snapshot {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15)
        var last = Core.snapshot()
        while (!done(last)) {
            assertTrue("timed out waiting for $what (${context()}); last snapshot:\n$last", System.nanoTime() < deadline)
            Thread.sleep(100)
            last = Core.snapshot()
        }
        return last
    }

    private fun tempDatabase(): File {
        val dir = Files.createTempDirectory("phonehome-capture").toFile()
        dir.deleteOnExit()
        return File(dir, "phonehome.db")
    }

    private fun sqlite(db: File, query: String): String {
        val process = ProcessBuilder("sqlite3", db.path, query).redirectErrorStream(true).start()
        assertTrue(process.waitFor(10, TimeUnit.SECONDS))
        return process.inputStream.bufferedReader().readText().trim()
    }

    @Test
    fun captureAttributesFlowsThroughTheKotlinCallbackAndFlushesOnStop() {
        val db = tempDatabase()
        val tun = NativeTestHooks.openTun(tunName)
        val callback = ProcNetCallback(answerUnsupported = false)
        // Hold the owner's answer back until the flow has closed: the engine must still apply it.
        val slowBinder = CountDownLatch(1)
        callback.answerGate = slowBinder
        Core.start(tun, db.path, config(), callback)
        assertTrue(NativeCore.isRunning())
        var markerId = 0L
        try {
            assertEquals(BLOB_BYTES, fetch())
            awaitSnapshot("the flow closed, its owner not known yet") { s ->
                s.recentList.any { it.dst == "$SERVER:$PORT" && it.closed && !it.hasUid }
            }
            slowBinder.countDown()
            val snapshot = awaitSnapshot("the client's flow with its uid and label", { "owner questions: ${callback.questions}" }) { s ->
                s.appsList.any { it.hasApp() && it.app.uid == CLIENT_UID && it.bytesDown >= BLOB_BYTES && it.app.label == "Test client" }
            }
            assertTrue(snapshot.totals.running)
            val app = snapshot.appsList.first { it.hasApp() && it.app.uid == CLIENT_UID }
            assertEquals(listOf("org.example.client", "org.example.shared"), app.app.packagesList)
            val flow = snapshot.recentList.first { it.dst == "$SERVER:$PORT" }
            assertEquals(Proto.PROTO_TCP, flow.proto)
            assertTrue(flow.hasUid)
            assertEquals(CLIENT_UID, flow.uid)
            assertEquals("tracking.intl.miui.com", flow.hostname)
            assertEquals("http", flow.hostnameSource)
            assertTrue("cleartext HTTP is flagged", flow.cleartext)
            assertEquals(1L, app.cleartextFlows)
            // The StartConfig's own IPs reach the identifier scan.
            assertTrue("own IP flagged: ${flow.leaksList}", "own_ip" in flow.leaksList)
            assertEquals(1L, app.leakFlows)
            // The catalog names the Host: Xiaomi's OneTrack telemetry; the app row counts it.
            assertEquals("xiaomi", flow.destination.vendor)
            assertEquals("analytics/telemetry", flow.destination.category)
            assertTrue(flow.destination.purpose.isNotEmpty())
            assertEquals(1L, app.xiaomiFlows)
            assertEquals(1, app.xiaomiHosts)
            assertEquals(1L, snapshot.totals.xiaomiFlows)

            // The core asked Kotlin about this connection, on its owner-lookup thread (attached
            // to the JVM under that name), never on the packet loop or the caller's thread.
            assertTrue(callback.questions.toString(), callback.questions.any { it.startsWith("6 ") && it.endsWith("-> $SERVER:$PORT") })
            assertEquals(setOf("phonehome-owner"), callback.threads.toSet())

            // The experiment: a marker, another fetch, then before/after.
            val marker = Core.mark("User Experience Program off")
            assertEquals("User Experience Program off", marker.label)
            markerId = marker.id
            assertEquals(BLOB_BYTES, fetch())
            awaitSnapshot("the second flow") { s -> s.appsList.any { it.hasApp() && it.app.uid == CLIENT_UID && it.flows >= 2 } }
            val comparison = Core.compare(marker.id, 0, xiaomiOnly = true)
            val host = comparison.hostsList.single()
            assertEquals("tracking.intl.miui.com", host.host)
            assertEquals(1L, host.flowsBefore)
            assertEquals(1L, host.flowsAfter)
            assertEquals(listOf("org.example.client"), host.appsAfterList)

            val detail = Core.appDetail(CLIENT_UID, unattributed = false)
            val endpoint = detail.endpointsList.single()
            assertEquals("tracking.intl.miui.com", endpoint.host)
            assertEquals(2L, endpoint.flows)
            assertEquals(listOf(PORT), endpoint.portsList)
            assertEquals(listOf(SERVER), endpoint.addressesList)
            assertEquals(CLIENT_UID, Core.domainDetail("tracking.intl.miui.com").appsList.single().app.uid)
        } finally {
            val final = Core.stop()
            assertFalse(final.totals.running)
        }
        assertFalse(NativeCore.isRunning())
        assertFalse("stop closes the tun fd", HostLibrary.isOpen(tun))

        // Everything reached the database, and the export is a database another tool opens.
        assertEquals("2", sqlite(db, "SELECT count(*) FROM flows WHERE uid = $CLIENT_UID AND close_reason IS NOT NULL"))
        assertEquals("User Experience Program off", sqlite(db, "SELECT label FROM markers"))
        val exported = File(db.parentFile, "export.db")
        val written = Core.export(NativeTestHooks.openFile(exported.path), db.path, ExportFormat.EXPORT_FORMAT_SQLITE)
        assertEquals(exported.length(), written)
        assertArrayEquals("SQLite format 3\u0000".toByteArray(), exported.readBytes().copyOfRange(0, 16))
        // Payload bytes down: both bodies plus the HTTP response headers.
        assertEquals("1", sqlite(exported, "SELECT sum(bytes_down) BETWEEN ${2 * BLOB_BYTES} AND ${2 * BLOB_BYTES + 1000} FROM flows WHERE uid = $CLIENT_UID"))
        // The HTML report of the experiment, written into a descriptor like the SAF one.
        val html = File(db.parentFile, "report.html")
        Core.export(NativeTestHooks.openFile(html.path), db.path, ExportFormat.EXPORT_FORMAT_HTML, compareMarkerId = markerId)
        val page = html.readText()
        assertTrue(page.startsWith("<!DOCTYPE html>"))
        assertTrue("the report names the marker", page.contains("User Experience Program off"))
        assertTrue("and the host", page.contains("tracking.intl.miui.com"))
        // After stop the last capture stays readable for the screens.
        assertEquals(CLIENT_UID, Core.appDetail(CLIENT_UID, unattributed = false).row.app.uid)
    }

    @Test
    fun belowAndroid10TheCoreReadsProcNetItself() {
        val db = tempDatabase()
        val tun = NativeTestHooks.openTun(tunName)
        val callback = ProcNetCallback(answerUnsupported = true)
        Core.start(tun, db.path, config(), callback)
        try {
            assertEquals(BLOB_BYTES, fetch())
            awaitSnapshot("the flow attributed by the core's procfs fallback") { s ->
                s.recentList.any { it.dst == "$SERVER:$PORT" && it.hasUid && it.uid == CLIENT_UID }
            }
            assertTrue(callback.questions.isNotEmpty())
        } finally {
            Core.stop()
        }
        assertFalse(HostLibrary.isOpen(tun))
    }

    @Test
    fun aNetworkChangeKeepsTheSessionAndEntersItsTimeline() {
        val db = tempDatabase()
        val tun = NativeTestHooks.openTun(tunName)
        Core.start(tun, db.path, config(), ProcNetCallback(answerUnsupported = false))
        try {
            assertEquals(BLOB_BYTES, fetch())
            // Wi-Fi -> mobile: a new resolver, told to the running core in place.
            val change = Core.changeNetwork("192.0.2.53:53", "cellular")
            assertEquals("network change: cellular, DNS upstream 192.0.2.53:53", change.label)
            assertTrue("the capture goes on", NativeCore.isRunning())
            assertEquals(BLOB_BYTES, fetch())
            awaitSnapshot("both flows and the change in one live session") { s ->
                s.markersList.any { it.id == change.id } &&
                    s.appsList.any { it.hasApp() && it.app.uid == CLIENT_UID && it.flows >= 2 }
            }
        } finally {
            Core.stop()
        }
        assertEquals("1", sqlite(db, "SELECT count(*) FROM sessions"))
        assertEquals("2", sqlite(db, "SELECT count(*) FROM flows WHERE uid = $CLIENT_UID"))
        assertEquals("network change: cellular, DNS upstream 192.0.2.53:53", sqlite(db, "SELECT label FROM markers"))
    }
}
