package org.phonehome.core

import java.io.File
import java.nio.file.Files
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.BeforeClass
import org.junit.Test
import org.phonehome.proto.ExportFormat
import org.phonehome.proto.StartConfig

/**
 * The JNI boundary of the real host cdylib, driven as the app drives it: errors and panics come
 * back as [CoreException], the VPN process survives them, and the core owns every descriptor it
 * is handed even when it refuses to start. No capture runs here (see CaptureTest for that).
 */
class NativeBridgeTest {
    companion object {
        @JvmStatic
        @BeforeClass
        fun load() = HostLibrary.load()
    }

    private fun expectCoreException(vararg fragments: String, call: () -> Unit): CoreException {
        try {
            call()
        } catch (e: CoreException) {
            for (fragment in fragments) {
                assertTrue("'${e.message}' should mention '$fragment'", e.message.orEmpty().contains(fragment))
            }
            return e
        }
        fail("expected a CoreException mentioning ${fragments.toList()}")
        throw AssertionError()
    }

    /** A descriptor the test owns until it hands it to the core (a file stands in for the tun). */
    private fun descriptor(): Int {
        val file = Files.createTempFile("phonehome-fd", ".bin").toFile()
        file.deleteOnExit()
        return NativeTestHooks.openFile(file.path)
    }

    private val callback = object : CoreCallback {
        override fun ownerUid(protocol: Int, localAddress: ByteArray, localPort: Int, remoteAddress: ByteArray, remotePort: Int) =
            CoreCallback.OWNER_UNKNOWN

        override fun appIdentity(uid: Int): ByteArray? = null
    }

    @Test
    fun aPanicInTheCoreBecomesAKotlinException() {
        expectCoreException("panic", "boom from the test") { NativeTestHooks.panicNow("boom from the test") }
        // The process and the library are still usable afterwards.
        assertFalse(NativeCore.isRunning())
        expectCoreException("panic", "second") { NativeTestHooks.panicNow("second") }
        assertFalse(NativeCore.isRunning())
    }

    @Test
    fun undecodableConfigIsRefusedAndTheTunFdIsClosed() {
        val fd = descriptor()
        assertTrue(HostLibrary.isOpen(fd))
        expectCoreException("bad-request", "undecodable") {
            NativeCore.start(fd, "/nonexistent/phonehome.db", byteArrayOf(0x0a, 0x7f, 0x01), callback)
        }
        assertFalse("the core must close the tun fd it was given", HostLibrary.isOpen(fd))
        assertFalse(NativeCore.isRunning())
    }

    @Test
    fun badSettingsNameTheFieldAndCloseTheFd() {
        val fd = descriptor()
        val config = StartConfig.newBuilder().setDnsV4("10.215.173.x").setDnsUpstream("9.9.9.9").build()
        expectCoreException("dns_v4", "10.215.173.x") {
            Core.start(fd, "/nonexistent/phonehome.db", config, callback)
        }
        assertFalse(HostLibrary.isOpen(fd))
        val fd2 = descriptor()
        val badMtu = StartConfig.newBuilder().setDnsV4("10.215.173.2").setDnsUpstream("9.9.9.9").setMtu(70000).build()
        expectCoreException("mtu") { Core.start(fd2, "/nonexistent/phonehome.db", badMtu, callback) }
        assertFalse(HostLibrary.isOpen(fd2))
    }

    @Test
    fun negativeDescriptorsAreRefused() {
        expectCoreException("tun fd -1") { NativeCore.start(-1, "/tmp/x.db", ByteArray(0), callback) }
        expectCoreException("export fd -1") { Core.export(-1, "/tmp/x.db", ExportFormat.EXPORT_FORMAT_SQLITE) }
    }

    @Test
    fun callsThatNeedACaptureSayNoneIsRunning() {
        if (NativeCore.isRunning()) return // CaptureTest owns the core in this JVM
        expectCoreException("not-running") { Core.mark("baseline") }
    }

    @Test
    fun withoutACaptureTheHistoryDatabaseAnswers() {
        if (NativeCore.isRunning()) return
        val missing = File(System.getProperty("java.io.tmpdir"), "phonehome-none-${System.nanoTime()}.db")
        NativeCore.openHistory(missing.path)
        // No database yet: an empty snapshot, and queries say nothing was recorded.
        assertFalse(Core.snapshot().hasTotals())
        assertFalse("reading history must not create the database", missing.exists())
        expectCoreException("no capture") { Core.appDetail(1000, unattributed = false) }
    }

    @Test
    fun exportOfAMissingDatabaseNamesItAndClosesTheFd() {
        val fd = descriptor()
        val missing = File(System.getProperty("java.io.tmpdir"), "phonehome-missing-${System.nanoTime()}.db")
        expectCoreException(missing.path) { Core.export(fd, missing.path, ExportFormat.EXPORT_FORMAT_SQLITE) }
        assertFalse(HostLibrary.isOpen(fd))
        assertFalse("a failed export must not create the database", missing.exists())
        assertEquals(false, NativeCore.isRunning())
    }
}
