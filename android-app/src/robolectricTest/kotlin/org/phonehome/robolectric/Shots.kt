package org.phonehome.robolectric

import android.app.Activity
import android.graphics.Bitmap
import android.graphics.Canvas
import android.os.Looper
import java.awt.image.BufferedImage
import java.io.File
import javax.imageio.ImageIO
import org.robolectric.Shadows.shadowOf

/** Screenshots of what Robolectric drew, and waiting for the app's background work. */
object Shots {
    private val dir = File(System.getProperty("phonehome.shots") ?: "target/android-shots")

    /** Draws the whole window (action bar included) to target/android-shots/[name].png. */
    fun save(activity: Activity, name: String): File {
        settle()
        val root = activity.window.decorView
        val bitmap = Bitmap.createBitmap(root.width, root.height, Bitmap.Config.ARGB_8888)
        root.draw(Canvas(bitmap))
        val pixels = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        val image = BufferedImage(bitmap.width, bitmap.height, BufferedImage.TYPE_INT_ARGB)
        image.setRGB(0, 0, bitmap.width, bitmap.height, pixels, 0, bitmap.width)
        dir.mkdirs()
        val file = File(dir, "$name.png")
        ImageIO.write(image, "png", file)
        return file
    }

    /** Runs the main looper (and lets Background's thread finish) until [done] or 5 s pass. */
    fun settle(what: String = "the screen", done: () -> Boolean = { true }) {
        val deadline = System.nanoTime() + 5_000_000_000L
        do {
            shadowOf(Looper.getMainLooper()).idle()
            if (done()) {
                Thread.sleep(50)
                shadowOf(Looper.getMainLooper()).idle()
                if (done()) return
            }
            Thread.sleep(20)
        } while (System.nanoTime() < deadline)
        throw AssertionError("$what: not reached within 5 s; uncaught exceptions: ${Harness.crashes}")
    }
}
