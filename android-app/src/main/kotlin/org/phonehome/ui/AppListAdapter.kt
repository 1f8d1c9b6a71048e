package org.phonehome.ui

import android.content.Context
import android.view.LayoutInflater
import android.view.View
import android.view.ViewGroup
import android.widget.BaseAdapter
import android.widget.TextView
import org.phonehome.R
import org.phonehome.proto.AppRow

/** The Live list: one row per app, in the core's order (most Xiaomi contacts first). */
class AppListAdapter(private val context: Context) : BaseAdapter() {
    private var all: List<AppRow> = emptyList()
    private var shown: List<AppRow> = emptyList()
    var query: String = ""
        set(value) {
            field = value
            refilter()
        }
    var xiaomiOnly: Boolean = false
        set(value) {
            field = value
            refilter()
        }

    fun update(rows: List<AppRow>) {
        all = rows
        refilter()
    }

    private fun refilter() {
        shown = all.filter { row -> AppFilter.matches(row, Format.appName(context, row), query, xiaomiOnly) }
        notifyDataSetChanged()
    }

    override fun getCount() = shown.size
    override fun getItem(position: Int): AppRow = shown[position]
    override fun getItemId(position: Int) = if (shown[position].unattributed) -1L else shown[position].app.uid.toLong()

    override fun getView(position: Int, convertView: View?, parent: ViewGroup): View {
        val view = convertView ?: LayoutInflater.from(context).inflate(R.layout.item_app, parent, false)
        val row = shown[position]
        val name = Format.appName(context, row)
        // Highlighted, and only there, when the app did contact Xiaomi: a "0 contacts" line in
        // the highlight colour would flag every app.
        val xiaomi = if (row.xiaomiFlows > 0) {
            context.getString(
                R.string.app_row_xiaomi,
                Format.count(context, R.plurals.count_contacts, row.xiaomiFlows),
                Format.count(context, R.plurals.count_hosts, row.xiaomiHosts.toLong()),
            )
        } else {
            ""
        }
        val counts = context.getString(
            R.string.app_row_counts,
            Format.count(context, R.plurals.count_contacts, row.flows),
            Format.bytes(context, row.bytesUp),
            Format.bytes(context, row.bytesDown),
            Format.count(context, R.plurals.count_lookups, row.lookups),
        )
        val flags = buildList {
            if (row.cleartextFlows > 0) add(Format.count(context, R.plurals.flag_cleartext, row.cleartextFlows))
            if (row.leakFlows > 0) add(Format.count(context, R.plurals.flag_identifiers, row.leakFlows))
            if (row.companiesCount > 0) add(context.getString(R.string.flag_companies, row.companiesList.joinToString(", ")))
        }.joinToString(" · ")
        view.findViewById<TextView>(R.id.app_name).text = name
        view.findViewById<TextView>(R.id.app_packages).text = if (row.hasApp()) Format.packages(row.app) else ""
        val xiaomiView = view.findViewById<TextView>(R.id.app_xiaomi)
        xiaomiView.text = xiaomi
        xiaomiView.visibility = if (xiaomi.isEmpty()) View.GONE else View.VISIBLE
        view.findViewById<TextView>(R.id.app_counts).text = counts
        val flagView = view.findViewById<TextView>(R.id.app_flags)
        flagView.text = flags
        flagView.visibility = if (flags.isEmpty()) View.GONE else View.VISIBLE
        view.contentDescription = listOf(name, xiaomi, counts, flags).filter { it.isNotEmpty() }.joinToString(". ")
        return view
    }
}
