package org.phonehome.robolectric

import java.lang.reflect.Method
import java.lang.reflect.Modifier
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.robolectric.annotation.Config
import org.robolectric.annotation.Implementation
import org.robolectric.annotation.Implements

/**
 * Robolectric takes every public or protected method of a shadow whose name and parameter types
 * match a method of the shadowed class as that method's implementation, @Implementation or not,
 * and of two candidates it takes the one reflection lists first. That order follows the JVM's
 * symbol table, so it changes with the classes loaded before: a Kotlin `var mtu` beside
 * `setMtu(Int): Builder` made Builder.setMtu return null (the property's void setter) after the
 * screen tests, and now and then alone. Plain JUnit: this reads the shadows, it runs no sandbox.
 */
class ShadowSignaturesTest {
    private val shadows: List<Class<*>> = listOf(CaptureServiceTest::class.java, ScreensTest::class.java)
        .flatMap { test -> test.getAnnotation(Config::class.java).shadows.map { it.java } }
        .distinct()

    private fun Method.signature() = name + parameterTypes.joinToString(",", "(", ")") { it.name }

    /** The shadow's public and protected methods Robolectric would bind to a method of [shadowed]. */
    private fun candidates(shadow: Class<*>, shadowed: Class<*>): Map<String, List<Method>> {
        val api = shadowed.declaredMethods.map { it.signature() }.toSet()
        return shadow.declaredMethods
            .filter { Modifier.isPublic(it.modifiers) || Modifier.isProtected(it.modifiers) }
            .filter { it.signature() in api }
            .groupBy { it.signature() }
    }

    @Test
    fun eachShadowedMethodHasOneCandidateAndItIsTheImplementation() {
        assertEquals(3, shadows.size)
        val clashes = shadows.flatMap { shadow ->
            val shadowed = shadow.getAnnotation(Implements::class.java).value.java
            val found = candidates(shadow, shadowed)
            assertTrue("${shadow.simpleName} implements nothing of ${shadowed.name}", found.isNotEmpty())
            found.filter { (_, methods) -> methods.size > 1 || methods.any { !it.isAnnotationPresent(Implementation::class.java) } }
                .map { (signature, methods) -> "${shadow.simpleName}.$signature: ${methods.map { it.toGenericString() }}" }
        }
        assertTrue("shadow methods that are not the one @Implementation:\n${clashes.joinToString("\n")}", clashes.isEmpty())
    }
}
