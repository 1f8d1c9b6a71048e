// Root of the Android build; the Rust core builds with cargo (see android-app's cargoNdk tasks).
plugins {
    alias(libs.plugins.android.application) apply false
    alias(libs.plugins.kotlin.android) apply false
    alias(libs.plugins.protobuf) apply false
}
