package org.phonehome.ui

import android.app.Activity
import android.os.Bundle
import android.widget.TextView
import org.phonehome.BuildConfig
import org.phonehome.R
import org.phonehome.core.Core

/** Version, whether the country/ASN file is loaded, and that file's licences and attribution. */
class AboutActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_about)
        EdgeToEdge.fit(this)
        findViewById<TextView>(R.id.about_version).text = getString(R.string.about_version, BuildConfig.VERSION_NAME)
        val geo = findViewById<TextView>(R.id.about_geo)
        Background.run({
            Core.load()
            Core.geoRanges
        }) { result ->
            geo.text = result.fold(
                { ranges -> if (ranges > 0) resources.getQuantityString(R.plurals.about_geo_loaded, ranges, ranges) else getString(R.string.about_geo_missing) },
                { getString(R.string.error_query, it.message) },
            )
        }
    }
}
