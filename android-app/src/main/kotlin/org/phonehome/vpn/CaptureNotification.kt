package org.phonehome.vpn

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.app.PendingIntent
import android.content.Context
import android.content.Intent
import android.os.Build
import org.phonehome.R
import org.phonehome.proto.Snapshot
import org.phonehome.ui.Format
import org.phonehome.ui.LiveActivity

/** The foreground notification: live counts and a Stop action. */
class CaptureNotification(private val context: Context) {
    private val manager = context.getSystemService(NotificationManager::class.java)

    init {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) {
            val channel = NotificationChannel(
                CHANNEL,
                context.getString(R.string.notification_channel),
                NotificationManager.IMPORTANCE_LOW,
            )
            channel.setShowBadge(false)
            manager.createNotificationChannel(channel)
        }
    }

    fun running(snapshot: Snapshot?, canStop: Boolean): Notification {
        val totals = snapshot?.totals
        val text = if (totals == null) {
            context.getString(R.string.notification_starting)
        } else {
            context.getString(
                R.string.notification_counts,
                Format.count(context, R.plurals.count_apps, snapshot.appsCount.toLong()),
                Format.count(context, R.plurals.count_contacts, totals.contacts),
                totals.xiaomiFlows,
                Format.count(context, R.plurals.count_lookups, totals.dnsQueries),
            )
        }
        val builder = builder()
            .setContentTitle(context.getString(R.string.notification_title))
            .setContentText(text)
            .setOngoing(true)
            .setOnlyAlertOnce(true)
            .setContentIntent(openApp())
        if (canStop) {
            val stop = PendingIntent.getService(
                context,
                1,
                Intent(context, CaptureService::class.java).setAction(CaptureService.ACTION_STOP),
                PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
            )
            builder.addAction(Notification.Action.Builder(null, context.getString(R.string.action_stop), stop).build())
        }
        return builder.build()
    }

    /** Shown when the capture ended without the user asking (revoked, failed to start). */
    fun stopped(reason: String) {
        val notification = builder()
            .setContentTitle(context.getString(R.string.notification_stopped))
            .setContentText(reason)
            .setStyle(Notification.BigTextStyle().bigText(reason))
            .setAutoCancel(true)
            .setContentIntent(openApp())
            .build()
        manager.notify(ID_STOPPED, notification)
    }

    fun update(notification: Notification) = manager.notify(ID_RUNNING, notification)

    private fun builder(): Notification.Builder {
        val builder = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) {
            Notification.Builder(context, CHANNEL)
        } else {
            @Suppress("DEPRECATION")
            Notification.Builder(context)
        }
        return builder.setSmallIcon(R.drawable.ic_notification).setShowWhen(false)
    }

    private fun openApp(): PendingIntent = PendingIntent.getActivity(
        context,
        0,
        Intent(context, LiveActivity::class.java),
        PendingIntent.FLAG_IMMUTABLE,
    )

    companion object {
        const val CHANNEL = "capture"
        const val ID_RUNNING = 1
        const val ID_STOPPED = 2
    }
}
