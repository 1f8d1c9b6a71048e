package org.phonehome.ui

import android.app.Activity
import android.os.Bundle
import android.view.View
import android.widget.ListView
import android.widget.TextView
import org.phonehome.R
import org.phonehome.core.Core
import org.phonehome.proto.AppDetail

/** One app: its counts, the companies it contacted, its contacts per hour, its endpoints (Xiaomi first). */
class AppDetailActivity : Activity() {
    private lateinit var adapter: EndpointAdapter
    private lateinit var header: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        CoreScreen.setContent(this, R.layout.activity_list)
        title = intent.getStringExtra(EXTRA_NAME) ?: getString(R.string.title_app_detail)
        adapter = EndpointAdapter(this)
        header = findViewById(R.id.header)
        val list = findViewById<ListView>(R.id.list)
        list.adapter = adapter
        list.emptyView = findViewById(R.id.empty)
    }

    override fun onResume() {
        super.onResume()
        val uid = intent.getIntExtra(EXTRA_UID, -1)
        val unattributed = intent.getBooleanExtra(EXTRA_UNATTRIBUTED, false)
        CoreScreen.load(this, header, { Core.appDetail(uid, unattributed) }) { detail ->
            val row = detail.row
            header.text = getString(
                R.string.app_detail_header,
                if (row.hasApp()) row.app.packagesList.joinToString("\n") else getString(R.string.app_unattributed),
                if (unattributed) "–" else uid.toString(),
                Format.count(this, R.plurals.count_contacts, row.flows),
                row.xiaomiFlows,
                Format.count(this, R.plurals.count_lookups, row.lookups),
            )
            adapter.update(detail.endpointsList)
            showCompanies(detail)
            val perHour = detail.contactsPerHourList
            val visibility = if (perHour.isEmpty()) View.GONE else View.VISIBLE
            val chart = findViewById<HourlyChart>(R.id.chart)
            chart.visibility = visibility
            chart.show(perHour)
            findViewById<TextView>(R.id.chart_title).apply {
                this.visibility = visibility
                text = getString(R.string.chart_contacts_per_hour, chart.zoneName)
            }
        }
    }

    private fun showCompanies(detail: AppDetail) {
        val text = detail.companiesList.joinToString(" · ") { resources.getQuantityString(R.plurals.company_contacts, Format.quantity(it.contacts), it.company, it.contacts) }
        val visibility = if (text.isEmpty()) View.GONE else View.VISIBLE
        findViewById<TextView>(R.id.companies_title).visibility = visibility
        findViewById<TextView>(R.id.companies).apply {
            this.text = text
            this.visibility = visibility
        }
    }

    companion object {
        const val EXTRA_UID = "uid"
        const val EXTRA_UNATTRIBUTED = "unattributed"
        const val EXTRA_NAME = "name"
    }
}
