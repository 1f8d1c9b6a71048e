package org.phonehome.ui

import android.os.Handler
import android.os.Looper
import java.util.concurrent.Executors
import org.phonehome.core.CoreException

/**
 * Native calls (queries, export) off the UI thread, results back on it. One thread: calls into
 * the core are short and the core serialises them anyway.
 */
object Background {
    private val executor = Executors.newSingleThreadExecutor()
    private val main = Handler(Looper.getMainLooper())

    fun <T> run(work: () -> T, done: (Result<T>) -> Unit) {
        executor.execute {
            val result = try {
                Result.success(work())
            } catch (e: CoreException) {
                Result.failure(e)
            } catch (e: java.io.IOException) { // includes undecodable protobuf bytes
                Result.failure(e)
            } catch (e: SecurityException) {
                Result.failure(e)
            } catch (e: IllegalStateException) {
                Result.failure(e)
            }
            main.post { done(result) }
        }
    }
}
