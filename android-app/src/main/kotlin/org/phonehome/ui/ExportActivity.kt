package org.phonehome.ui

import android.app.Activity
import android.content.Intent
import android.os.Bundle
import android.widget.Button
import android.widget.TextView
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import org.phonehome.R
import org.phonehome.core.Core
import org.phonehome.proto.ExportFormat
import org.phonehome.settings.Settings

/**
 * Export through the Storage Access Framework: the user picks where; the core writes a
 * consistent copy of the database (or the report) straight into the file descriptor.
 */
class ExportActivity : Activity() {
    private lateinit var status: TextView
    /** Set when opened from the Experiment screen: the HTML report is that marker's before/after. */
    private var compareMarkerId = 0L

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_export)
        EdgeToEdge.fit(this)
        status = findViewById(R.id.export_status)
        compareMarkerId = intent.getLongExtra(EXTRA_COMPARE_MARKER, 0)
        if (compareMarkerId != 0L) {
            status.text = getString(R.string.export_compare_intro, intent.getStringExtra(EXTRA_COMPARE_LABEL).orEmpty())
        }
        findViewById<Button>(R.id.export_sqlite).setOnClickListener {
            pick(REQUEST_SQLITE, "application/vnd.sqlite3", "phonehome-${stamp()}.db")
        }
        findViewById<Button>(R.id.export_html).setOnClickListener {
            pick(REQUEST_HTML, "text/html", "phonehome-${stamp()}.html")
        }
    }

    private fun stamp() = SimpleDateFormat("yyyyMMdd-HHmm", Locale.ROOT).format(Date())

    private fun pick(request: Int, mime: String, name: String) {
        val intent = Intent(Intent.ACTION_CREATE_DOCUMENT)
            .addCategory(Intent.CATEGORY_OPENABLE)
            .setType(mime)
            .putExtra(Intent.EXTRA_TITLE, name)
        startActivityForResult(intent, request)
    }

    @Deprecated("Framework Activity API; this app uses no AndroidX")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        @Suppress("DEPRECATION")
        super.onActivityResult(requestCode, resultCode, data)
        val uri = data?.data
        if (resultCode != RESULT_OK || uri == null) return
        val format = if (requestCode == REQUEST_HTML) ExportFormat.EXPORT_FORMAT_HTML else ExportFormat.EXPORT_FORMAT_SQLITE
        val dbPath = Settings(this).databasePath
        status.setText(R.string.export_running)
        Background.run({
            // "wt": a file the user picked again must be cut to the new length, not overwritten
            // in place with the old tail left behind.
            val pfd = contentResolver.openFileDescriptor(uri, "wt") ?: throw java.io.IOException("cannot open $uri")
            Core.export(pfd.detachFd(), dbPath, format, compareMarkerId = compareMarkerId)
        }) { result ->
            status.text = result.fold(
                { getString(R.string.export_done, Format.bytes(this, it)) },
                { getString(R.string.export_failed, it.message) },
            )
        }
    }

    companion object {
        const val EXTRA_COMPARE_MARKER = "compare_marker"
        const val EXTRA_COMPARE_LABEL = "compare_label"
        private const val REQUEST_SQLITE = 1
        private const val REQUEST_HTML = 2
    }
}
