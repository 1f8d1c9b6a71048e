package org.phonehome.ui

import android.content.Context
import android.view.LayoutInflater
import android.view.View
import android.view.ViewGroup
import android.widget.BaseAdapter
import android.widget.TextView
import org.phonehome.R
import org.phonehome.proto.Endpoint

/**
 * The destinations of one app: host, classification (company, provider), purpose, country, bytes,
 * times, flags, and the cleartext requests kept (identifier values already replaced by the core).
 */
class EndpointAdapter(private val context: Context) : BaseAdapter() {
    private var rows: List<Endpoint> = emptyList()

    fun update(endpoints: List<Endpoint>) {
        rows = endpoints
        notifyDataSetChanged()
    }

    override fun getCount() = rows.size
    override fun getItem(position: Int): Endpoint = rows[position]
    override fun getItemId(position: Int) = position.toLong()

    override fun getView(position: Int, convertView: View?, parent: ViewGroup): View {
        val view = convertView ?: LayoutInflater.from(context).inflate(R.layout.item_endpoint, parent, false)
        val e = rows[position]
        val classification = Format.destination(context, e.destination).ifEmpty { context.getString(R.string.unclassified) }
        val stats = context.getString(
            R.string.endpoint_stats,
            Format.count(context, R.plurals.count_contacts, e.flows),
            Format.bytes(context, e.bytesUp),
            Format.bytes(context, e.bytesDown),
            Format.time(context, e.firstSeenMs),
            Format.time(context, e.lastSeenMs),
        )
        val flags = buildList {
            if (e.cleartextFlows > 0) add(Format.count(context, R.plurals.flag_cleartext, e.cleartextFlows))
            if (e.leaksCount > 0) add(context.getString(R.string.flag_leaks, e.leaksList.joinToString(", ")))
            if (e.descriptorsCount > 0) add(context.getString(R.string.flag_descriptors, e.descriptorsList.joinToString(", ")))
        }.joinToString(" · ").let { flags ->
            if (e.httpRequestsCount == 0) flags
            else listOf(flags, context.getString(R.string.flag_requests, e.httpRequestsList.joinToString("\n")))
                .filter { it.isNotEmpty() }.joinToString("\n")
        }
        view.findViewById<TextView>(R.id.endpoint_host).text = e.host
        view.findViewById<TextView>(R.id.endpoint_class).text = classification
        val purpose = view.findViewById<TextView>(R.id.endpoint_purpose)
        purpose.text = e.destination.purpose
        purpose.visibility = if (e.destination.purpose.isEmpty()) View.GONE else View.VISIBLE
        view.findViewById<TextView>(R.id.endpoint_stats).text = stats
        val flagView = view.findViewById<TextView>(R.id.endpoint_flags)
        flagView.text = flags
        flagView.visibility = if (flags.isEmpty()) View.GONE else View.VISIBLE
        view.contentDescription = listOf(e.host, classification, e.destination.purpose, stats, flags)
            .filter { it.isNotEmpty() }
            .joinToString(". ")
        return view
    }
}
