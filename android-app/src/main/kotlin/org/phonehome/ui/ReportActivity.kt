package org.phonehome.ui

import android.app.Activity
import android.os.Bundle
import android.os.ParcelFileDescriptor
import android.webkit.WebView
import android.widget.TextView
import java.io.File
import org.phonehome.R
import org.phonehome.core.Core
import org.phonehome.proto.ExportFormat
import org.phonehome.settings.Settings

/**
 * The core's HTML report, the same self-contained file `phonehome report --format html` and
 * Export write, shown in the framework WebView with the network and scripts off: the report
 * needs neither, and a page about trackers must not fetch anything.
 */
class ReportActivity : Activity() {
    private lateinit var web: WebView
    private lateinit var status: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        CoreScreen.setContent(this, R.layout.activity_report)
        status = findViewById(R.id.report_status)
        web = findViewById(R.id.report)
        web.settings.apply {
            blockNetworkLoads = true
            blockNetworkImage = true
            javaScriptEnabled = false
            allowFileAccess = false
            allowContentAccess = false
        }
        val dbPath = Settings(this).databasePath
        val out = File(cacheDir, "report.html")
        CoreScreen.load(this, status, {
            val fd = ParcelFileDescriptor.open(
                out,
                ParcelFileDescriptor.MODE_CREATE or ParcelFileDescriptor.MODE_TRUNCATE or ParcelFileDescriptor.MODE_WRITE_ONLY,
            )
            Core.export(fd.detachFd(), dbPath, ExportFormat.EXPORT_FORMAT_HTML)
            out.readText()
        }) { html ->
            if (html.isBlank()) {
                status.text = getString(R.string.report_empty)
            } else {
                // The line stays: it says what the page below is, and how large.
                status.text = getString(R.string.report_shown, (html.length + 1023) / 1024)
                web.loadDataWithBaseURL(null, html, "text/html", "utf-8", null)
            }
        }
    }

    override fun onDestroy() {
        web.destroy()
        super.onDestroy()
    }
}
