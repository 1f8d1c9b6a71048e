package org.phonehome.ui

import android.Manifest
import android.app.Activity
import android.content.Intent
import android.content.pm.PackageManager
import android.net.VpnService
import android.os.Build
import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.text.Editable
import android.text.TextWatcher
import android.view.Menu
import android.view.MenuItem
import android.view.View
import android.widget.Button
import android.widget.EditText
import android.widget.ListView
import android.widget.Switch
import android.widget.TextView
import org.phonehome.R
import org.phonehome.core.Core
import org.phonehome.proto.Snapshot
import org.phonehome.vpn.CaptureService

/** The Live screen: apps sorted by contacts to Xiaomi, live counters, filter and search. */
class LiveActivity : Activity() {
    private val main = Handler(Looper.getMainLooper())
    private lateinit var adapter: AppListAdapter
    private lateinit var status: TextView
    private lateinit var warning: TextView
    private lateinit var startStop: Button
    private var polling = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_live)
        EdgeToEdge.fit(this)
        adapter = AppListAdapter(this)
        status = findViewById(R.id.status)
        warning = findViewById(R.id.warning)
        startStop = findViewById(R.id.start_stop)
        val list = findViewById<ListView>(R.id.apps)
        list.adapter = adapter
        list.emptyView = findViewById(R.id.empty)
        list.setOnItemClickListener { _, _, position, _ ->
            val row = adapter.getItem(position)
            startActivity(
                Intent(this, AppDetailActivity::class.java)
                    .putExtra(AppDetailActivity.EXTRA_UID, row.app.uid)
                    .putExtra(AppDetailActivity.EXTRA_UNATTRIBUTED, row.unattributed)
                    .putExtra(AppDetailActivity.EXTRA_NAME, Format.appName(this, row)),
            )
        }
        findViewById<Switch>(R.id.xiaomi_only).setOnCheckedChangeListener { _, checked -> adapter.xiaomiOnly = checked }
        findViewById<EditText>(R.id.search).addTextChangedListener(object : TextWatcher {
            override fun beforeTextChanged(s: CharSequence?, start: Int, count: Int, after: Int) = Unit
            override fun onTextChanged(s: CharSequence?, start: Int, before: Int, count: Int) = Unit
            override fun afterTextChanged(s: Editable?) {
                adapter.query = s?.toString().orEmpty()
            }
        })
        startStop.setOnClickListener { if (Core.isRunning()) CaptureService.stop(this) else requestStart() }
    }

    override fun onResume() {
        super.onResume()
        polling = true
        poll()
    }

    override fun onPause() {
        polling = false
        main.removeCallbacksAndMessages(null)
        super.onPause()
    }

    private fun poll() {
        if (!polling) return
        Background.run({ Core.snapshot().takeIf { it.hasTotals() } }) { result ->
            show(result.getOrNull())
            main.postDelayed({ poll() }, POLL_MS)
        }
    }

    private fun show(snapshot: Snapshot?) {
        val state = CaptureService.state
        val running = snapshot?.totals?.running == true
        startStop.setText(if (running) R.string.action_stop else R.string.action_start)
        startStop.contentDescription = getString(if (running) R.string.cd_stop_capture else R.string.cd_start_capture)
        val totals = snapshot?.totals
        status.text = if (totals == null) {
            getString(R.string.status_idle)
        } else {
            getString(
                if (running) R.string.status_running else R.string.status_stopped,
                Format.count(this, R.plurals.count_contacts, totals.contacts),
                totals.xiaomiFlows,
                Format.bytes(this, totals.bytesUp),
                Format.bytes(this, totals.bytesDown),
                Format.count(this, R.plurals.count_lookups, totals.dnsQueries),
            )
        }
        val warnings = buildList {
            state.error?.let { add(it) }
            if (totals != null && totals.error.isNotEmpty()) add(totals.error)
            if (running && state.privateDnsStrict) add(getString(R.string.warning_private_dns))
            if (running && state.dnsFallback) add(getString(R.string.status_dns_fallback, state.dnsUpstream))
        }
        warning.text = warnings.joinToString("\n")
        warning.visibility = if (warnings.isEmpty()) View.GONE else View.VISIBLE
        adapter.update(snapshot?.appsList.orEmpty())
    }

    private fun requestStart() {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU &&
            checkSelfPermission(Manifest.permission.POST_NOTIFICATIONS) != PackageManager.PERMISSION_GRANTED
        ) {
            // The capture runs without it; the notification with the counts and Stop needs it.
            requestPermissions(arrayOf(Manifest.permission.POST_NOTIFICATIONS), REQUEST_NOTIFICATIONS)
            return
        }
        val consent = VpnService.prepare(this)
        if (consent != null) startActivityForResult(consent, REQUEST_VPN) else CaptureService.start(this)
    }

    override fun onRequestPermissionsResult(requestCode: Int, permissions: Array<out String>, grantResults: IntArray) {
        super.onRequestPermissionsResult(requestCode, permissions, grantResults)
        if (requestCode == REQUEST_NOTIFICATIONS) {
            val consent = VpnService.prepare(this)
            if (consent != null) startActivityForResult(consent, REQUEST_VPN) else CaptureService.start(this)
        }
    }

    @Deprecated("Framework Activity API; this app uses no AndroidX")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        @Suppress("DEPRECATION")
        super.onActivityResult(requestCode, resultCode, data)
        if (requestCode == REQUEST_VPN && resultCode == RESULT_OK) CaptureService.start(this)
    }

    override fun onCreateOptionsMenu(menu: Menu): Boolean {
        menuInflater.inflate(R.menu.live, menu)
        return true
    }

    override fun onOptionsItemSelected(item: MenuItem): Boolean {
        val target = when (item.itemId) {
            R.id.menu_experiment -> ExperimentActivity::class.java
            R.id.menu_export -> ExportActivity::class.java
            R.id.menu_settings -> SettingsActivity::class.java
            R.id.menu_miui -> MiuiActivity::class.java
            R.id.menu_report -> ReportActivity::class.java
            R.id.menu_about -> AboutActivity::class.java
            else -> return super.onOptionsItemSelected(item)
        }
        startActivity(Intent(this, target))
        return true
    }

    private companion object {
        const val REQUEST_VPN = 1
        const val REQUEST_NOTIFICATIONS = 2
        const val POLL_MS = 1_000L
    }
}
