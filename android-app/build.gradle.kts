import com.google.protobuf.gradle.proto
import javax.inject.Inject
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.protobuf)
}

/** The ABIs the core is built for: phones (arm64, old 32-bit arm) and the emulator (x86_64). */
val coreAbis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")

android {
    namespace = "org.phonehome"
    compileSdk = libs.versions.compileSdk.get().toInt()
    ndkVersion = libs.versions.ndk.get()

    defaultConfig {
        applicationId = "org.phonehome"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.targetSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += coreAbis }
    }

    buildTypes {
        release {
            isMinifyEnabled = true
            isShrinkResources = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    buildFeatures { buildConfig = true }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets {
        getByName("main") {
            // The one contract with the core, shared with rust-core/build.rs.
            proto { srcDir("../proto") }
        }
    }

    packaging {
        // Stored uncompressed and page-aligned, so Android maps the .so straight from the APK
        // (required for 16 KB page devices).
        jniLibs { useLegacyPackaging = false }
    }

    // The geo file is read in place from the APK (an offset into base.apk), so it must be stored.
    androidResources { noCompress += "bin" }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

protobuf {
    protoc { artifact = libs.protobuf.protoc.get().toString() }
    generateProtoTasks {
        all().forEach { task ->
            task.builtins { create("java") { option("lite") } }
        }
    }
}

dependencies {
    implementation(libs.protobuf.javalite)
}

/**
 * Builds rust-core's JNI library (`libphonehome.so`) with cargo-ndk for every ABI into a
 * directory the variant packages as jniLibs. Needs `cargo install cargo-ndk` and
 * `rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`, and
 * `cargo` on the PATH of the Gradle daemon (Android Studio started from a desktop launcher may
 * not see ~/.cargo/bin: start it from a shell, or `./gradlew --stop` after changing PATH).
 */
abstract class CargoNdkTask : DefaultTask() {
    @get:Inject abstract val execOperations: ExecOperations
    @get:OutputDirectory abstract val outputDir: DirectoryProperty
    @get:InputFiles @get:PathSensitive(PathSensitivity.RELATIVE) abstract val coreSources: ConfigurableFileCollection
    @get:Input abstract val release: Property<Boolean>
    @get:Input abstract val abis: ListProperty<String>
    @get:Input abstract val minSdk: Property<Int>
    @get:Internal abstract val ndkDirectory: DirectoryProperty
    @get:Internal abstract val workspace: DirectoryProperty

    @TaskAction
    fun build() {
        execOperations.exec {
            workingDir(workspace.get().asFile)
            environment("ANDROID_NDK_HOME", ndkDirectory.get().asFile.absolutePath)
            // SQLite's `long double` pulls __extenddftf2 into x86_64 builds, which the NDK's
            // runtime lacks (rusqlite#1380): compile SQLite with plain doubles.
            environment("LIBSQLITE3_FLAGS", "-DLONGDOUBLE_TYPE=double")
            // 16 KB page alignment on every NDK (r28+ does it by default), after the user's own
            // flags, which are kept.
            val userFlags = System.getenv("RUSTFLAGS").orEmpty().trim()
            environment("RUSTFLAGS", listOf(userFlags, "-C link-arg=-Wl,-z,max-page-size=16384").filter { it.isNotEmpty() }.joinToString(" "))
            // Debug APKs get an optimised core too: at opt-level 0 the packet path is too slow
            // to use a phone through it. Debug assertions and symbols stay.
            if (!release.get()) environment("CARGO_PROFILE_DEV_OPT_LEVEL", "2")
            val command = mutableListOf("cargo", "ndk")
            abis.get().forEach { command += listOf("-t", it) }
            command += listOf("-P", minSdk.get().toString(), "-o", outputDir.get().asFile.absolutePath)
            command += listOf("build", "-p", "phonehome-core", "--lib", "--no-default-features", "--features", "jni")
            if (release.get()) command += "--release"
            commandLine(command)
        }
    }
}

/**
 * The offline country/ASN file (`phonehome-geo.bin`) as an APK asset, made by
 * scripts/fetch-geo.sh (npm + python3; data CC0-1.0 and CC BY 4.0, see the About screen).
 * Stored uncompressed (`noCompress` below) so the core can read it from the APK at an offset
 * without a copy. Set `-Pphonehome.noGeo` to build without it (the app then shows no countries).
 */
abstract class GeoAssetTask : DefaultTask() {
    @get:Inject abstract val execOperations: ExecOperations
    @get:OutputDirectory abstract val outputDir: DirectoryProperty
    @get:InputFile @get:PathSensitive(PathSensitivity.RELATIVE) abstract val script: RegularFileProperty

    @TaskAction
    fun build() {
        val out = outputDir.get().asFile.resolve(GEO_ASSET)
        if (project.hasProperty("phonehome.noGeo")) {
            out.delete()
            return
        }
        execOperations.exec { commandLine("bash", script.get().asFile.absolutePath, out.absolutePath) }
    }
}

val GEO_ASSET = "phonehome-geo.bin"

androidComponents {
    onVariants { variant ->
        val name = variant.name.replaceFirstChar { it.uppercase() }
        val cargoNdk = tasks.register<CargoNdkTask>("cargoNdk$name") {
            release.set(variant.buildType == "release")
            abis.set(coreAbis)
            minSdk.set(libs.versions.minSdk.get().toInt())
            ndkDirectory.set(androidComponents.sdkComponents.ndkDirectory)
            workspace.set(rootProject.layout.projectDirectory)
            coreSources.from(
                rootProject.fileTree("rust-core/src"),
                rootProject.file("rust-core/Cargo.toml"),
                rootProject.file("rust-core/build.rs"),
                rootProject.file("Cargo.lock"),
                rootProject.file("proto/phonehome.proto"),
            )
        }
        variant.sources.jniLibs?.addGeneratedSourceDirectory(cargoNdk, CargoNdkTask::outputDir)
        val geo = tasks.register<GeoAssetTask>("geoAsset$name") {
            script.set(rootProject.layout.projectDirectory.file("scripts/fetch-geo.sh"))
        }
        variant.sources.assets?.addGeneratedSourceDirectory(geo, GeoAssetTask::outputDir)
    }
}
