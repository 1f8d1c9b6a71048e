package org.phonehome.core

import com.google.protobuf.MessageLite
import java.io.File
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test
import org.phonehome.proto.QueryRequest
import org.phonehome.proto.Snapshot
import org.phonehome.proto.StartConfig

/**
 * The committed proto/golden/ files were written by prost (rust-core/src/android/golden.rs);
 * protobuf-javalite must encode the same values to the same bytes and read them back equal.
 */
class GoldenBytesTest {
    private val dir = File(System.getProperty("phonehome.golden") ?: error("phonehome.golden not set"))

    private fun golden(name: String): ByteArray = File(dir, "$name.bin").readBytes()

    private fun assertSameBytes(name: String, message: MessageLite) {
        assertArrayEquals("$name: javalite encoding differs from prost's golden file", golden(name), message.toByteArray())
    }

    @Test
    fun kotlinEncodesTheSameBytesAsRust() {
        assertSameBytes("start_config", GoldenMessages.startConfig())
        assertSameBytes("app_identity", GoldenMessages.appIdentity())
        assertSameBytes("snapshot", GoldenMessages.snapshot())
        assertSameBytes("compare_request", GoldenMessages.compareRequest())
        assertSameBytes("endpoint_response", GoldenMessages.endpointResponse())
    }

    @Test
    fun kotlinDecodesRustBytesToTheSameValues() {
        assertEquals(GoldenMessages.startConfig(), StartConfig.parseFrom(golden("start_config")))
        assertEquals(GoldenMessages.snapshot(), Snapshot.parseFrom(golden("snapshot")))
        assertEquals(GoldenMessages.compareRequest(), QueryRequest.parseFrom(golden("compare_request")))
        val snapshot = Snapshot.parseFrom(golden("snapshot"))
        assertEquals(-1L, snapshot.getApps(1).lastSeenMs)
        assertEquals("Grüße, groetjes — 小米", StartConfig.parseFrom(golden("start_config")).note)
    }
}
