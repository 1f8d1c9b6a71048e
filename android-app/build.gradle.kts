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
 * `rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`.
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
            // 16 KB page alignment on every NDK (r28+ does it by default).
            environment("RUSTFLAGS", "-C link-arg=-Wl,-z,max-page-size=16384")
            val command = mutableListOf("cargo", "ndk")
            abis.get().forEach { command += listOf("-t", it) }
            command += listOf("-P", minSdk.get().toString(), "-o", outputDir.get().asFile.absolutePath)
            command += listOf("build", "-p", "phonehome-core", "--lib", "--no-default-features", "--features", "jni")
            if (release.get()) command += "--release"
            commandLine(command)
        }
    }
}

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
    }
}
