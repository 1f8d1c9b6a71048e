package org.phonehome.ui

import org.phonehome.proto.AppRow

/** The Live screen's filter: "Xiaomi only" and a search over the label and every package. */
object AppFilter {
    fun matches(row: AppRow, shownName: String, query: String, xiaomiOnly: Boolean): Boolean {
        if (xiaomiOnly && row.xiaomiFlows == 0L) return false
        val q = query.trim().lowercase()
        if (q.isEmpty()) return true
        return shownName.lowercase().contains(q) || row.app.packagesList.any { it.lowercase().contains(q) }
    }
}
