package org.phonehome.ui

import android.os.Handler
import android.os.Looper
import java.util.concurrent.Executors

/**
 * Native calls (queries, export) off the UI thread, results back on it. One thread: calls into
 * the core are short and the core serialises them anyway.
 */
object Background {
    private val executor = Executors.newSingleThreadExecutor()
    private val main = Handler(Looper.getMainLooper())

    fun <T> run(work: () -> T, done: (Result<T>) -> Unit) {
        executor.execute {
            // Any Throwable, not only the core's own errors: an UnsatisfiedLinkError (library
            // missing after an update), an OutOfMemoryError on a huge answer or a bug must reach
            // the screen as a message, not kill the process from this thread.
            val result = try {
                Result.success(work())
            } catch (e: Throwable) {
                Result.failure(e)
            }
            main.post { done(result) }
        }
    }
}
