package org.phonehome.ui

import android.app.Activity
import android.content.Intent
import android.os.Bundle
import android.view.LayoutInflater
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.LinearLayout
import android.widget.Spinner
import android.widget.Switch
import android.widget.TextView
import android.widget.Toast
import org.phonehome.R
import org.phonehome.core.Core
import org.phonehome.proto.Comparison
import org.phonehome.proto.Marker

/**
 * The before/after experiment: capture a baseline, switch off Xiaomi's "data sharing" settings
 * one by one (each press sets a marker), then compare which hosts are still contacted.
 */
class ExperimentActivity : Activity() {
    private var markers: List<Marker> = emptyList()
    private lateinit var spinner: Spinner
    private lateinit var result: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_experiment)
        EdgeToEdge.fit(this)
        val container = findViewById<LinearLayout>(R.id.steps)
        val titles = resources.getStringArray(R.array.experiment_steps)
        val paths = resources.getStringArray(R.array.experiment_paths)
        val inflater = LayoutInflater.from(this)
        for ((index, title) in titles.withIndex()) {
            val step = inflater.inflate(R.layout.item_step, container, false)
            step.findViewById<TextView>(R.id.step_title).text = getString(R.string.step_title, index + 1, title)
            step.findViewById<TextView>(R.id.step_path).text = paths.getOrElse(index) { "" }
            val button = step.findViewById<Button>(R.id.step_mark)
            button.contentDescription = getString(R.string.cd_mark_step, title)
            button.setOnClickListener { mark(getString(R.string.marker_off, title)) }
            container.addView(step)
        }
        findViewById<Button>(R.id.mark_baseline).setOnClickListener { mark(getString(R.string.marker_baseline)) }
        spinner = findViewById(R.id.marker_spinner)
        result = findViewById(R.id.compare_result)
        findViewById<Button>(R.id.compare).setOnClickListener { compare() }
        findViewById<Button>(R.id.compare_save).setOnClickListener {
            val marker = markers.getOrNull(spinner.selectedItemPosition)
            if (marker == null) {
                result.setText(R.string.compare_needs_marker)
            } else {
                startActivity(
                    Intent(this, ExportActivity::class.java)
                        .putExtra(ExportActivity.EXTRA_COMPARE_MARKER, marker.id)
                        .putExtra(ExportActivity.EXTRA_COMPARE_LABEL, marker.label),
                )
            }
        }
    }

    override fun onResume() {
        super.onResume()
        refreshMarkers()
    }

    private fun mark(label: String) {
        Background.run({ Core.mark(label) }) { outcome ->
            outcome.onSuccess {
                Toast.makeText(this, getString(R.string.marker_set, it.label), Toast.LENGTH_SHORT).show()
                refreshMarkers()
            }.onFailure {
                Toast.makeText(this, getString(R.string.error_mark, it.message), Toast.LENGTH_LONG).show()
            }
        }
    }

    private fun refreshMarkers() {
        Background.run({ Core.snapshot().markersList }) { outcome ->
            markers = outcome.getOrDefault(emptyList())
            val labels = markers.map { "${Format.time(this, it.timeMs)} — ${it.label}" }
            spinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, labels)
            spinner.setSelection(labels.size - 1)
        }
    }

    private fun compare() {
        val marker = markers.getOrNull(spinner.selectedItemPosition)
        if (marker == null) {
            result.setText(R.string.compare_needs_marker)
            return
        }
        val xiaomiOnly = findViewById<Switch>(R.id.compare_xiaomi).isChecked
        Background.run({ Core.compare(marker.id, 0, xiaomiOnly) }) { outcome ->
            outcome.onSuccess { result.text = describe(it) }
                .onFailure { result.text = getString(R.string.error_query, it.message) }
        }
    }

    private fun describe(c: Comparison): String {
        if (c.hostsCount == 0) return getString(R.string.compare_empty)
        val still = c.hostsList.count { it.flowsAfter > 0 }
        val lines = c.hostsList.map { h ->
            val category = Format.destination(this, h.destination)
            val line = resources.getQuantityString(R.plurals.compare_line, Format.quantity(h.flowsBefore), h.host, h.flowsBefore, h.flowsAfter)
            val apps = if (h.appsAfterCount > 0) "\n    " + h.appsAfterList.joinToString(", ") else ""
            if (category.isEmpty()) line + apps else "$line\n    $category$apps"
        }
        return resources.getQuantityString(R.plurals.compare_summary, c.hostsCount, c.marker.label, still, c.hostsCount) + "\n\n" + lines.joinToString("\n")
    }
}
